"""tfds source: a tiny custom dataset prepared offline as ArrayRecord, read via data_source."""

import numpy as np
import pytest

from input_pipeline import pipeline, sources

from .conftest import make_config

tfds = pytest.importorskip("tensorflow_datasets")


class TinyShades(tfds.core.GeneratorBasedBuilder):
    """20 train + 10 test 8x8 images: label 0 dark grey, label 1 light grey."""

    # tfds 4.9.10's code_path() needs the `importlib_resources` backport (not installed on
    # Python >= 3.9) for builders defined inside a package; a top-level module name avoids it.
    __module__ = "tiny_shades_builder"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 3)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 20), "test": self._generate_examples(100, 10)}

    def _generate_examples(self, start, n):
        for i in range(start, start + n):
            label = i % 2
            yield i, {"image": np.full((8, 8, 3), 30 + 200 * label, np.uint8), "label": label}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    TinyShades(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def test_tfds_source_lists_all_splits(tfds_dir):
    src = sources.make_source("tfds:tiny_shades", make_config(tfds_data_dir=tfds_dir).data)
    assert src.class_names == ["dark", "light"]
    assert len(src) == 30
    assert {k.split(":")[0] for k in src.keys} == {"train", "test"}
    assert np.bincount(src.labels).tolist() == [15, 15]
    raw = src.load(src.keys[0])
    assert isinstance(raw, bytes)  # Encoded: decoded by our own decoder in the pipeline.


def test_tfds_through_the_pipeline(tfds_dir, tmp_path):
    config = make_config("tfds:tiny_shades", image_size=8, tfds_data_dir=tfds_dir)
    data = pipeline.build_data(config, str(tmp_path / "work"))
    assert sum(len(m) for m in data.manifests.values()) == 30
    assert open(tmp_path / "work" / "splits" / "val.csv").readline().startswith("record,")
    again = pipeline.build_data(config, str(tmp_path / "work"))
    assert again.manifests["train"].keys == data.manifests["train"].keys
    batch = next(iter(pipeline.train_dataset(data, config, batch_size=4, seed=0)))
    # value_range(-1, 1) of grey 30 and 230.
    expected = np.where(batch["label"] == 1, 230 / 127.5 - 1, 30 / 127.5 - 1)
    np.testing.assert_allclose(batch["image"].mean((1, 2, 3)), expected, atol=1e-5)


def test_tfds_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(sources.SourceError, match="tfds dataset 'no_such_set'"):
        sources.make_source("tfds:no_such_set", make_config(tfds_data_dir=str(tmp_path)).data)


def test_tfds_split_source_keeps_official_test(tfds_dir, tmp_path):
    """data.split='source': tfds's own test stays the test split; val is carved from train."""
    config = make_config(
        "tfds:tiny_shades", image_size=8, tfds_data_dir=tfds_dir, split="source", val_fraction=0.2
    )
    m = pipeline.build_data(config, str(tmp_path / "work")).manifests
    assert sorted(k.split(":")[0] for k in m["test"].keys) == ["test"] * 10
    assert {k.split(":")[0] for k in m["train"].keys + m["val"].keys} == {"train"}
    assert m["val"].class_counts().tolist() == [2, 2]
    assert m["train"].class_counts().tolist() == [8, 8]
