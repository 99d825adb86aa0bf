"""Stratified, seeded, reproducible splits; manifests round-trip; rebalancing and class weights."""

import numpy as np
import pytest

from input_pipeline import splits
from input_pipeline.splits import Manifest


def toy_manifest(counts=(100, 50, 10, 3)):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    keys = [f"c{label}/f{i}.jpg" for i, label in enumerate(labels)]
    return Manifest(keys, labels, [f"class{c}" for c in range(len(counts))], "path")


def test_split_is_stratified_disjoint_and_complete():
    m = toy_manifest()
    parts = splits.stratified_split(m, (0.7, 0.2, 0.1), seed=0)
    all_keys = sum((p.keys for p in parts.values()), [])
    assert sorted(all_keys) == sorted(m.keys)
    assert len(set(all_keys)) == len(m)
    np.testing.assert_array_equal(parts["train"].class_counts(), [70, 35, 7, 2])
    np.testing.assert_array_equal(parts["val"].class_counts(), [20, 10, 2, 1])
    np.testing.assert_array_equal(parts["test"].class_counts(), [10, 5, 1, 0])


def test_split_is_reproducible_and_seed_dependent():
    m = toy_manifest()
    a = splits.stratified_split(m, (0.6, 0.2, 0.2), seed=1)
    b = splits.stratified_split(m, (0.6, 0.2, 0.2), seed=1)
    c = splits.stratified_split(m, (0.6, 0.2, 0.2), seed=2)
    assert a["val"].keys == b["val"].keys
    assert a["val"].keys != c["val"].keys


def test_tiny_classes_keep_a_train_example_and_bad_fractions_fail():
    m = toy_manifest((1, 2))
    parts = splits.stratified_split(m, (0.2, 0.4, 0.4), seed=0)
    assert parts["train"].class_counts().tolist() == [1, 1]
    for bad in [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="config.data.split"):
            splits.stratified_split(m, bad, seed=0)


def test_manifest_csv_round_trip_and_mismatch(tmp_path):
    m = toy_manifest((3, 2))
    path = str(tmp_path / "splits" / "train.csv")
    splits.write_manifest(path, m)
    assert open(path).readline().strip() == "path,label,class_name"
    back = splits.read_manifest(path, m.class_names)
    assert back.keys == m.keys and back.labels.tolist() == m.labels.tolist()
    with pytest.raises(ValueError, match="line 2: .*dataset changed"):
        splits.read_manifest(path, ["other0", "other1"])
    ints = Manifest([5, 7], [1, 0], ["a", "b"], "index")
    splits.write_manifest(path, ints)
    assert splits.read_manifest(path, ["a", "b"]).keys == [5, 7]


@pytest.mark.parametrize("mode, expected", [("down", 3), ("up", 100), ("mean", 41)])
def test_rebalance_modes(mode, expected):
    m = toy_manifest()
    out = splits.rebalance(m, mode, seed=0)
    np.testing.assert_array_equal(out.class_counts(), [expected] * 4)
    # Only examples of the right class are drawn, originals are all kept when upsampling.
    for key, label in zip(out.keys, out.labels):
        assert key.startswith(f"c{label}/")
    if mode == "up":
        assert set(out.keys) == set(m.keys)
    assert splits.rebalance(m, mode, seed=0).keys == out.keys
    assert splits.rebalance(m, "none", seed=0) is m
    with pytest.raises(ValueError, match="unknown rebalance"):
        splits.rebalance(m, "sideways", seed=0)


def test_class_weights_are_balanced():
    m = toy_manifest((30, 10, 0))
    w = splits.class_weights(m)
    np.testing.assert_allclose(w, [40 / 60, 40 / 20, 0.0])
    # Weighted counts are equal across present classes.
    np.testing.assert_allclose((w * m.class_counts())[:2], [20, 20])
