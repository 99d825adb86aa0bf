"""Metrics against scikit-learn on fixed predictions, and the cross-dataset class mapping."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from input_pipeline import sources
from jaxcls.evaluation import cross_dataset
from jaxcls.evaluation import metrics as metrics_lib
from jaxcls.evaluation.loop import manifest_positions

CLASSES = ["cat", "dog", "horse", "spider"]


@pytest.fixture
def fixed():
    """120 examples, 4 classes; 'spider' never occurs in the labels but is sometimes predicted."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    logits = rng.normal(size=(120, 4))
    logits[np.arange(120), labels] += rng.uniform(0.0, 2.5, 120)  # Mostly right, not always.
    losses = -np.log(metrics_lib.softmax(logits)[np.arange(120), labels])
    return logits, labels, losses


def test_full_metrics_match_scikit_learn(fixed):
    logits, labels, losses = fixed
    m = metrics_lib.full_metrics(logits, labels, losses, class_names=CLASSES, top_k=2)
    preds = logits.argmax(-1)
    assert 0 < (preds == 3).sum() and 0.5 < m["accuracy"] < 0.95  # The fixture is non-trivial.
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert m["top2_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(labels, logits, k=2, labels=range(4))
    )
    assert m["loss"] == pytest.approx(losses.mean())
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, preds, labels=range(4), zero_division=0
    )
    for i, name in enumerate(CLASSES):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (p[i], r[i], f[i], s[i])
        )
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(
            labels, preds, average=avg, zero_division=0
        )
        assert m[f"{avg}_avg"]["f1"] == pytest.approx(af)
        assert m[f"{avg}_avg"]["precision"] == pytest.approx(ap)
        assert m[f"{avg}_avg"]["recall"] == pytest.approx(ar)
    basic = metrics_lib.basic_metrics(logits, labels, losses, num_classes=4)
    assert basic["macro_f1"] == pytest.approx(m["macro_avg"]["f1"])
    counts = skm.confusion_matrix(labels, preds, labels=range(4))
    np.testing.assert_array_equal(m["confusion_matrix"]["counts"], counts)
    norm = np.asarray(m["confusion_matrix"]["normalized"])
    np.testing.assert_allclose(norm[:3].sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(norm[3], 0.0)  # No true spiders: an all-zero row, not NaN.


def test_roc_and_pr_per_class_match_scikit_learn(fixed):
    logits, labels, losses = fixed
    m = metrics_lib.full_metrics(logits, labels, losses, class_names=CLASSES, curve_points=11)
    probs = metrics_lib.softmax(logits)
    for i, name in enumerate(CLASSES[:3]):
        assert m["roc"][name]["auc"] == pytest.approx(skm.roc_auc_score(labels == i, probs[:, i]))
        assert m["pr"][name]["average_precision"] == pytest.approx(
            skm.average_precision_score(labels == i, probs[:, i])
        )
        assert 2 <= len(m["roc"][name]["fpr"]) <= 11  # Thinned for results.json.
        assert m["roc"][name]["fpr"][0] == 0.0 and m["roc"][name]["tpr"][-1] == 1.0
    assert m["roc"]["spider"]["auc"] is None and m["roc"]["spider"]["fpr"] == []
    aucs = [skm.roc_auc_score(labels == i, probs[:, i]) for i in range(3)]
    assert m["roc_auc_macro"] == pytest.approx(np.mean(aucs))
    json.dumps(m)  # The whole report is JSON-serialisable.


def test_most_confused_and_highest_loss():
    counts = np.array([[5, 3, 0], [1, 6, 3], [0, 4, 2]])
    pairs = metrics_lib.most_confused(counts, ["a", "b", "c"], top=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("c", "b", 4),
        ("a", "b", 3),
        ("b", "c", 3),
    ]
    assert pairs[0]["fraction_of_true"] == pytest.approx(4 / 6)
    logits = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 0.0], [0.0, 0.2]])
    labels = np.array([0, 0, 1, 1])
    losses = -np.log(metrics_lib.softmax(logits)[np.arange(4), labels])
    top = metrics_lib.highest_loss(
        metrics_lib.softmax(logits), labels, losses, ["a", "b"], keys=["w", "x", "y", "z"], top=2
    )
    assert [t["key"] for t in top] == ["x", "y"]
    assert top[0]["true"] == "a" and top[0]["predicted"] == "b"
    assert top[0]["loss"] == pytest.approx(losses[1])


def test_classification_report_text_lists_every_class(fixed):
    logits, labels, _ = fixed
    text = metrics_lib.classification_report_text(labels, logits, CLASSES, title="test")
    assert text.startswith("test\n====")
    for name in CLASSES + ["macro avg", "weighted avg"]:
        assert name in text


def test_map_classes_renames_matches_and_drops():
    index, info = cross_dataset.map_classes(
        ["gatto", "Dog", "ragno", "zebra"],
        ["cat", "dog", "spider", "horse"],
        {"gatto": "cat", "ragno": "spider"},
    )
    np.testing.assert_array_equal(index, [0, 1, 2, -1])
    assert info["dropped"] == ["zebra"]
    assert info["renamed"] == {"gatto": "cat", "Dog": "dog", "ragno": "spider"}
    assert info["missing"] == ["horse"]
    mapped, keep = cross_dataset.remap_labels(np.array([3, 0, 2, 3, 1, 0]), index)
    np.testing.assert_array_equal(keep, [1, 2, 4, 5])
    np.testing.assert_array_equal(mapped, [0, 2, 1, 0])


def test_map_classes_refuses_unknown_classes_unless_dropped():
    with pytest.raises(ValueError, match="zebra"):
        cross_dataset.map_classes(["cat", "zebra"], ["cat", "dog"], drop_unknown=False)
    with pytest.raises(ValueError, match="no class"):
        cross_dataset.map_classes(["zebra"], ["cat", "dog"])


def test_resolve_class_map_forms(tmp_path):
    assert sources.parse_class_map("") == {}
    assert sources.parse_class_map("a:b, c : d") == {"a": "b", "c": "d"}
    assert sources.parse_class_map("animals10")["gatto"] == "cat"
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"x": "y"}))
    assert sources.parse_class_map(str(path)) == {"x": "y"}
    with pytest.raises(ValueError, match="built-in"):
        sources.parse_class_map("nonsense")


def test_the_readmes_inline_json_class_map_means_the_same_in_training_and_evaluation():
    """The README's ``'{"cane": "dog"}'`` is one pair, cane -> dog, for both readers (the old
    evaluation parser split it at the colon into '{"cane"' -> '"dog"}' and dropped every class)."""
    assert sources.parse_class_map('{"cane": "dog"}') == {"cane": "dog"}
    index, info = cross_dataset.map_classes(
        ["cane", "gatto"], ["cat", "dog"], sources.parse_class_map('{"cane": "dog"}')
    )
    assert index.tolist() == [1, -1] and info["renamed"] == {"cane": "dog"}
    with pytest.raises(ValueError, match="not valid JSON"):
        sources.parse_class_map('{"cane": dog}')


@pytest.mark.parametrize("n,bs,procs", [(10, 4, 1), (10, 2, 2), (11, 2, 3), (7, 4, 2)])
def test_manifest_positions_follow_the_sharded_eval_order(n, bs, procs):
    # Simulate eval_batches on each process (rows p, p+P, ..., padded) and the global batches.
    per = -(-n // procs)
    nb = -(-per // bs)
    local = [
        list(range(p, n, procs)) + [-1] * (nb * bs - len(range(p, n, procs))) for p in range(procs)
    ]
    order = [i for b in range(nb) for p in range(procs) for i in local[p][b * bs : (b + 1) * bs]]
    expected = [i for i in order if i >= 0]
    np.testing.assert_array_equal(manifest_positions(n, bs, procs), expected)
    assert sorted(expected) == list(range(n))
