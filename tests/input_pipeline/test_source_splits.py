"""data.split='source' (a folder's own train/valid/test, tfds's splits), data.train_fraction,
data.max_per_class and eval.max_per_class: stratified, seeded, written to the split CSVs, resumable."""

import os
import types

import numpy as np
import pytest

from input_pipeline import pipeline, sources, splits
from jaxcls.evaluation import cross_dataset

from .conftest import COLOURS, make_config, solid, write_image


def split_folder(root, layout):
    """Writes ``root/<split>/<class>/img_i.png`` for ``layout = {split: {class: n}}``."""
    for split, counts in layout.items():
        for c, (name, n) in enumerate(counts.items()):
            for i in range(n):
                image = solid(list(COLOURS.values())[c], noise_seed=i)
                write_image(os.path.join(root, split, name, f"img_{i:03d}.png"), image)
    return str(root)


def counts(manifest):
    return manifest.class_counts().tolist()


def test_parse_split_accepts_source_and_fractions():
    assert splits.parse_split("source") == "source"
    assert splits.parse_split(("source",)) == "source"  # --config.data.split=source on a tuple.
    assert splits.parse_split((0.8, 0.1, 0.1)) == (0.8, 0.1, 0.1)
    assert splits.parse_split("0.6, 0.2, 0.2") == (0.6, 0.2, 0.2)
    with pytest.raises(ValueError, match="'source' or"):
        splits.parse_split("sauce")


def test_folder_keeps_its_own_train_valid_test(tmp_path):
    root = split_folder(
        tmp_path / "cinic",
        {
            "train": {"cat": 6, "dog": 4},
            "valid": {"cat": 2, "dog": 3},
            "test": {"cat": 3, "dog": 1},
        },
    )
    work = str(tmp_path / "work")
    config = make_config(f"folder:{root}", split="source", scan=False)
    data = pipeline.build_data(config, work)
    m = data.manifests
    assert data.class_names == ["cat", "dog"]
    assert (
        counts(m["train"]) == [6, 4] and counts(m["val"]) == [2, 3] and counts(m["test"]) == [3, 1]
    )
    for name, folder in (("train", "train"), ("val", "valid"), ("test", "test")):
        assert all(k.startswith(f"{folder}/") for k in m[name].keys)
    # The CSVs record the source's split, and a rerun (resume) reads the same manifests back.
    again = pipeline.build_data(config, work)
    for s in splits.SPLITS:
        assert again.manifests[s].keys == m[s].keys
    assert splits.read_manifest(f"{work}/splits/val.csv", data.class_names).keys == m["val"].keys
    # The images load from their split folder.
    batch = next(pipeline.eval_batches(data, "test", config, batch_size=4))
    assert batch["mask"].sum() == 4 and (batch["label"] == m["test"].labels).all()


def test_folder_without_valid_carves_val_from_train(tmp_path):
    root = split_folder(tmp_path / "d", {"train": {"a": 10, "b": 20}, "test": {"a": 2, "b": 2}})
    config = make_config(f"folder:{root}", split=("source",), val_fraction=0.2, scan=False)
    data = pipeline.build_data(config, None)
    m = data.manifests
    assert counts(m["val"]) == [2, 4] and counts(m["train"]) == [8, 16]
    assert all(k.startswith("train/") for k in m["val"].keys)
    assert counts(m["test"]) == [2, 2] and all(k.startswith("test/") for k in m["test"].keys)
    no_val = pipeline.build_data(
        make_config(f"folder:{root}", split="source", val_fraction=0.0, scan=False), None
    )
    assert len(no_val.manifests["val"]) == 0 and counts(no_val.manifests["train"]) == [10, 20]


def test_folder_without_split_folders_is_one_clear_error(tmp_path):
    root = split_folder(tmp_path / "flat", {"cats": {"x": 1}, "dogs": {"y": 1}})
    with pytest.raises(sources.SourceError, match=r"train/.*found \['cats', 'dogs'\]"):
        pipeline.build_data(make_config(f"folder:{root}", split="source", scan=False), None)
    root = split_folder(tmp_path / "odd", {"train": {"a": 2}, "test": {"a": 1, "zebra": 1}})
    with pytest.raises(sources.SourceError, match="classes of train/"):
        pipeline.build_data(make_config(f"folder:{root}", split="source", scan=False), None)
    with pytest.raises(sources.SourceError, match="no splits of its own"):
        pipeline.build_data(make_config("digits", split="source"), None)


def test_train_fraction_and_max_per_class_are_stratified_seeded_and_resumable(tmp_path):
    work = str(tmp_path / "work")
    config = make_config("digits", split=(0.5, 0.25, 0.25), train_fraction=0.5, max_per_class=20)
    data = pipeline.build_data(config, work)
    full = pipeline.build_data(make_config("digits", split=(0.5, 0.25, 0.25)), None)
    for s in splits.SPLITS:
        n_full = full.manifests[s].class_counts()
        want = np.round(n_full * (0.5 if s == "train" else 1.0)).astype(int)
        assert counts(data.manifests[s]) == np.minimum(want, 20).tolist()
        assert set(data.manifests[s].keys) <= set(full.manifests[s].keys)  # A subset of the split.
    unused = splits.read_manifest(f"{work}/splits/unused.csv", data.class_names)
    assert len(unused) + sum(len(m) for m in data.manifests.values()) == 1797
    # Seeded: the same config picks the same examples, another seed others.
    same = pipeline.build_data(config, None)
    assert same.manifests["train"].keys == data.manifests["train"].keys
    config.data.split_seed = 1
    other = pipeline.build_data(config, None)
    assert other.manifests["train"].keys != data.manifests["train"].keys
    # Resume reads the subsampled CSVs back (the left-out examples are not "new" examples).
    resumed = pipeline.build_data(config, work)
    assert resumed.manifests["train"].keys == data.manifests["train"].keys


def test_eval_max_per_class_samples_the_cross_dataset_set(tmp_path):
    root = split_folder(tmp_path, {"other": {"cat": 9, "dog": 5, "zebra": 3}})
    config = make_config("digits", split_seed=3)
    run = types.SimpleNamespace(
        config=config, data=pipeline.Data(["cat", "dog"], {}, (16, 16), "", "", "", [])
    )
    eval_cfg = types.SimpleNamespace(
        dataset=f"folder:{root}/other", class_map="", drop_unknown=True, max_per_class=4
    )
    data, _, dropped = cross_dataset._dataset(run, eval_cfg)
    test = data.manifests["test"]
    assert counts(test) == [4, 4] and dropped == 3
    again, _, _ = cross_dataset._dataset(run, eval_cfg)
    assert again.manifests["test"].keys == test.keys
