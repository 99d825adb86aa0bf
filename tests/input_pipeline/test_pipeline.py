"""The grain pipeline: determinism, epochs, sharding, eval coverage, exact resume, split files."""

import json
import os

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from input_pipeline import pipeline

from .conftest import COLOURS, make_config, solid, write_image


@pytest.fixture(scope="module")
def digits():
    config = make_config("digits", image_size=16)
    return config, pipeline.build_data(config, None)


def take(ds_or_iter, n):
    it = iter(ds_or_iter)
    return [next(it) for _ in range(n)]


def test_build_data_digits_contract(digits, tmp_path):
    config, data = digits
    assert data.num_classes == 10 and data.image_size == (16, 16)
    assert data.source_spec == "digits" and data.skipped == []
    assert sum(len(m) for m in data.manifests.values()) == 1797
    assert data.train_pipeline == "decode(draft=16)|resize(16)|value_range(-1, 1)"
    assert data.eval_pipeline == "decode(draft=16)|resize(16)|value_range(-1, 1)"
    assert pipeline.steps_per_epoch(data, 64) == len(data.manifests["train"]) // 64
    assert pipeline.steps_per_epoch(data, 10**6) == 1


def test_train_batches_shapes_determinism_and_epochs(digits):
    config, data = digits
    ds = pipeline.train_dataset(data, config, batch_size=32, seed=7)
    steps = pipeline.steps_per_epoch(data, 32)
    batches = take(ds, 2 * steps)
    b = batches[0]
    assert b["image"].shape == (32, 16, 16, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (32,) and b["label"].dtype == np.int32
    assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0
    # Labels match the manifest rows the ids point at.
    np.testing.assert_array_equal(b["label"], data.manifests["train"].labels[b["id"]])
    # Same seed, same batches; another seed, other batches.
    again = take(pipeline.train_dataset(data, config, batch_size=32, seed=7), 3)
    for x, y in zip(batches, again):
        np.testing.assert_array_equal(x["image"], y["image"])
    other = take(pipeline.train_dataset(data, config, batch_size=32, seed=8), 1)
    assert not np.array_equal(other[0]["id"], b["id"])
    # Each epoch visits distinct examples, and the second epoch is in a different order.
    epoch1 = np.concatenate([x["id"] for x in batches[:steps]])
    epoch2 = np.concatenate([x["id"] for x in batches[steps:]])
    assert len(set(epoch1.tolist())) == len(epoch1) == steps * 32
    assert len(set(epoch2.tolist())) == len(epoch2)
    assert not np.array_equal(epoch1, epoch2)


def test_random_ops_draw_from_grain_rng(digits):
    config, data = digits
    data = pipeline.Data(**{**data.__dict__, "train_pipeline": "decode|resize(20)|random_crop(16)"})
    a = take(pipeline.train_dataset(data, config, batch_size=16, seed=3), 2)
    b = take(pipeline.train_dataset(data, config, batch_size=16, seed=3), 2)
    np.testing.assert_array_equal(a[1]["image"], b[1]["image"])
    # The same example is cropped differently in the next epoch.
    steps = len(data.manifests["train"]) // 16
    batches = take(pipeline.train_dataset(data, config, batch_size=16, seed=3), steps + 8)
    first = {int(i): img for i, img in zip(batches[0]["id"], batches[0]["image"])}
    later = [
        (img, first[int(i)])
        for x in batches[steps:]
        for i, img in zip(x["id"], x["image"])
        if int(i) in first
    ]
    assert later and any(not np.array_equal(x, y) for x, y in later)


def test_shards_are_disjoint_and_equal_length(digits):
    config, data = digits
    steps = pipeline.steps_per_epoch(data, 32)
    ids = []
    for shard in range(2):
        ds = pipeline.train_dataset(
            data, config, batch_size=16, seed=0, shard_index=shard, shard_count=2
        )
        ids.append(np.concatenate([b["id"] for b in take(ds, steps)]))
    assert len(ids[0]) == len(ids[1]) == steps * 16
    assert not set(ids[0].tolist()) & set(ids[1].tolist())
    with pytest.raises(ValueError, match="fewer than the per-host batch"):
        pipeline.train_dataset(data, config, batch_size=10**5, seed=0)


@pytest.mark.parametrize("batch_size, shard_count", [(64, 1), (50, 3)])
def test_eval_covers_every_example_once_with_mask(digits, batch_size, shard_count):
    config, data = digits
    manifest = data.manifests["val"]
    seen, counts = [], []
    for shard in range(shard_count):
        batches = list(
            pipeline.eval_batches(
                data,
                "val",
                config,
                batch_size=batch_size,
                shard_index=shard,
                shard_count=shard_count,
            )
        )
        counts.append(len(batches))
        for b in batches:
            assert b["image"].shape == (batch_size, 16, 16, 3) and b["mask"].dtype == np.float32
            real = b["mask"] == 1
            assert np.all(b["image"][~real] == 0)
            np.testing.assert_array_equal(b["label"][real], manifest.labels[b["id"][real]])
            seen += b["id"][real].tolist()
    assert sorted(seen) == list(range(len(manifest)))
    assert len(set(counts)) == 1  # Every host runs the same number of eval steps.
    # Deterministic: a second pass gives identical batches.
    a = next(pipeline.eval_batches(data, "val", config, batch_size=batch_size))
    b = next(pipeline.eval_batches(data, "val", config, batch_size=batch_size))
    np.testing.assert_array_equal(a["image"], b["image"])


def _assert_resumes(ds, n_before=3, n_after=4):
    it = iter(ds)
    take(it, n_before)
    state = json.loads(json.dumps(it.get_state()))
    expected = take(it, n_after)
    it.close()
    fresh = iter(ds)
    fresh.set_state(state)
    got = take(fresh, n_after)
    fresh.close()
    for x, y in zip(expected, got):
        np.testing.assert_array_equal(x["id"], y["id"])
        np.testing.assert_array_equal(x["image"], y["image"])
    return state, expected


def test_resume_with_zero_and_two_workers_and_refuse_changes(digits):
    config, data = digits
    ds0 = pipeline.train_dataset(data, config, batch_size=32, seed=1)
    # Across the epoch boundary.
    state0, _ = _assert_resumes(ds0, n_before=pipeline.steps_per_epoch(data, 32) - 1)
    config2 = make_config("digits", image_size=16, num_workers=2)
    ds2 = pipeline.train_dataset(data, config2, batch_size=32, seed=1)
    state2, after2 = _assert_resumes(ds2)
    # Same seed: the worker processes change nothing about the stream.
    _, after0 = _assert_resumes(ds0)
    for x, y in zip(after0, after2):
        np.testing.assert_array_equal(x["image"], y["image"])
    with pytest.raises(ValueError, match="num_workers: checkpoint 2 vs now 0"):
        iter(ds0).set_state(state2)
    other_seed = pipeline.train_dataset(data, config, batch_size=32, seed=2)
    with pytest.raises(ValueError, match="seed"):
        iter(other_seed).set_state(state0)


def test_resume_at_every_element_with_random_ops(make_folder):
    """grain's own checker: restoring at each position of two epochs gives the same outputs."""
    root = make_folder({"red": 6, "green": 6})
    config = make_config(
        f"folder:{root}",
        image_size=8,
        split=(1.0, 0.0, 0.0),
        train_pipeline="decode|random_resized_crop(8)|flip_lr|value_range(-1, 1)",
    )
    data = pipeline.build_data(config, None)
    ds = pipeline.train_dataset(data, config, batch_size=4, seed=0)
    grain.experimental.assert_equal_output_after_checkpoint(
        grain.experimental.LimitIterDataset(ds, count=7)  # 3 steps per epoch: crosses two ends.
    )


def test_orbax_checkpoint_of_iterator(digits, tmp_path):
    config, data = digits
    ds = pipeline.train_dataset(data, config, batch_size=32, seed=5)
    it = iter(ds)
    take(it, 5)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(5, args=ocp.args.Composite(ds=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = take(it, 3)
        restored = iter(ds)
        mngr.restore(5, args=ocp.args.Composite(ds=grain.checkpoint.CheckpointRestore(restored)))
    for x, y in zip(expected, take(restored, 3)):
        np.testing.assert_array_equal(x["image"], y["image"])


def test_changed_file_list_is_refused_on_restore(make_folder):
    root = make_folder({"red": 6, "green": 6})
    config = make_config(f"folder:{root}", split=(1.0, 0.0, 0.0))
    data = pipeline.build_data(config, None)
    it = iter(pipeline.train_dataset(data, config, batch_size=4, seed=0))
    next(it)
    state = it.get_state()
    write_image(os.path.join(root, "green", "extra.png"), solid((0, 0, 0)))
    changed = pipeline.build_data(config, None)
    with pytest.raises(ValueError, match="source: checkpoint"):
        iter(pipeline.train_dataset(changed, config, batch_size=4, seed=0)).set_state(state)


def test_folder_pipeline_pairs_each_image_with_its_label(make_folder, tmp_path):
    root = make_folder({"red": 8, "green": 8, "blue": 8})
    config = make_config(f"folder:{root}", image_size=(12, 16), train_pipeline="decode|flip_lr")
    data = pipeline.build_data(config, str(tmp_path / "work"))
    assert data.class_names == ["blue", "green", "red"]
    assert data.image_size == (12, 16)
    colour_of = {i: COLOURS[name] for i, name in enumerate(data.class_names)}
    for b in take(pipeline.train_dataset(data, config, batch_size=4, seed=0), 4):
        for image, label in zip(b["image"], b["label"]):
            np.testing.assert_allclose(image.mean((0, 1)), colour_of[int(label)], atol=12)


def test_splits_written_then_reread_on_resume(make_folder, tmp_path):
    root = make_folder({"cat": 10, "dog": 10})
    workdir = str(tmp_path / "work")
    config = make_config(f"folder:{root}", split=(0.6, 0.2, 0.2))
    first = pipeline.build_data(config, workdir)
    for split in ("train", "val", "test"):
        lines = open(os.path.join(workdir, "splits", f"{split}.csv")).read().splitlines()
        assert lines[0] == "path,label,class_name"
        assert len(lines) - 1 == len(first.manifests[split]) == {"train": 12}.get(split, 4)
    # A resumed run reads the files: another split_seed changes nothing.
    config.data.split_seed = 99
    second = pipeline.build_data(config, workdir)
    for split in first.manifests:
        assert second.manifests[split].keys == first.manifests[split].keys
    # Without a workdir the new seed gives another split.
    assert pipeline.build_data(config, None).manifests["val"].keys != first.manifests["val"].keys


@pytest.mark.parametrize(
    "change, message",
    [("add", "not in the splits"), ("remove", "no longer has"), ("swap", "is class")],
)
def test_resume_refuses_a_changed_dataset(make_folder, tmp_path, change, message):
    root = make_folder({"cat": 5, "dog": 5})
    workdir = str(tmp_path / "work")
    config = make_config(f"folder:{root}")
    pipeline.build_data(config, workdir)
    if change == "add":
        write_image(os.path.join(root, "dog", "new.png"), solid((1, 1, 1)))
    elif change == "remove":
        os.remove(os.path.join(root, "dog", "img_000.jpg"))
    else:  # Same class names, but every file now belongs to the other class.
        config = make_config(f"folder:{root}", class_map={"cat": "dog", "dog": "cat"})
    with pytest.raises(ValueError, match=message):
        pipeline.build_data(config, workdir)


def test_pipeline_output_shape_must_match_image_size(make_folder):
    root = make_folder({"a": 4, "b": 4})
    config = make_config(f"folder:{root}", image_size=32, train_pipeline="decode|value_range(0, 1)")
    data = pipeline.build_data(config, None)
    with pytest.raises(ValueError, match=r"shape \(12, 16, 3\), expected \(32, 32, 3\)"):
        take(pipeline.train_dataset(data, config, batch_size=2, seed=0), 1)
    with pytest.raises(ValueError, match="random ops"):
        pipeline.build_data(make_config(f"folder:{root}", eval_pipeline="decode|flip_lr"), None)
    with pytest.raises(ValueError, match="unknown preprocessing op"):
        pipeline.build_data(make_config(f"folder:{root}", train_pipeline="decode|blurr"), None)


def test_rebalance_and_class_weights_touch_train_only(make_folder):
    root = make_folder({"many": 40, "few": 10})
    base = pipeline.build_data(make_config(f"folder:{root}"), None)
    data = pipeline.build_data(
        make_config(f"folder:{root}", rebalance="up", class_weights=True), None
    )
    counts = data.manifests["train"].class_counts()
    assert counts[0] == counts[1] == base.manifests["train"].class_counts().max()
    for split in ("val", "test"):
        assert data.manifests[split].keys == base.manifests[split].keys
    np.testing.assert_allclose(data.class_weights, [1.0, 1.0])
    assert pipeline.build_data(make_config(f"folder:{root}"), None).class_weights is None


def test_eval_transform_matches_eval_batches(digits):
    config, data = digits
    transform = pipeline.eval_transform(data.eval_pipeline, data.image_size)
    batch = next(pipeline.eval_batches(data, "test", config, batch_size=4))
    key = data.manifests["test"].keys[int(batch["id"][2])]
    np.testing.assert_array_equal(transform(data.source.load(key)), batch["image"][2])


def test_mixup_and_cutmix_give_soft_labels(digits):
    _, data = digits
    for mix in ({"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}):
        config = make_config("digits", image_size=16, **mix)
        b = take(pipeline.train_dataset(data, config, batch_size=16, seed=0), 1)[0]
        onehot = b["label_onehot"]
        assert onehot.shape == (16, 10) and onehot.dtype == np.float32
        np.testing.assert_allclose(onehot.sum(1), 1.0, rtol=1e-6)
        # Example i is mixed with example 15 - i only.
        for i in range(16):
            support = set(np.flatnonzero(onehot[i] > 0).tolist())
            assert support <= {int(b["label"][i]), int(b["label"][15 - i])}
    plain = take(
        pipeline.train_dataset(data, make_config("digits", image_size=16), batch_size=16, seed=0), 1
    )
    assert "label_onehot" not in plain[0]
