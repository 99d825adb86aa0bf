"""The end-of-run report: files, plots, TensorBoard images, the runs table, and cross-dataset
evaluation from a trained checkpoint with renamed and unknown classes."""

import csv
import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxcls.evaluation import metrics
from jaxcls.reporting import plots, report, runs

CLASSES = ["cat", "dog", "horse"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _outputs(seed, n):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), labels] += 1.5
    losses = -np.log(metrics.softmax(logits)[np.arange(n), labels])
    return {"logits": logits, "labels": labels, "losses": losses}


HISTORY = [
    {"epoch": e, "phase": "head" if e <= 2 else "fine_tune", "train/loss": 2.0 / e,
     "train/accuracy": 0.2 * e, "val/loss": 2.2 / e, "val/accuracy": 0.18 * e,
     "val/macro_f1": 0.17 * e}
    for e in range(1, 5)
]  # fmt: skip


def _config(runs_table=""):
    c = ml_collections.ConfigDict()
    c.model = {"name": "cnn_small"}
    c.init = {"pretrained": "timm:demo", "path": "", "checkpoint": ""}
    c.optimizer = {"name": "adamw", "learning_rate": 1e-3}
    c.batch_size = 32
    c.eval = {"runs_table": runs_table}
    return c


def _write(workdir, config, results=None):
    outputs = {"train": _outputs(0, 90), "val": _outputs(1, 30), "test": _outputs(2, 30)}
    results = results or {"model": "cnn_small", "epochs_run": 4, "steps_run": 40,
                          "train_images_per_sec": 123.4, "splits": {}}  # fmt: skip
    images = np.random.default_rng(3).integers(0, 255, (30, 20, 24, 3), dtype=np.uint8)
    keys = {s: [f"{s}/{i}.png" for i in range(len(o["labels"]))] for s, o in outputs.items()}
    report.write_reports(
        workdir, config, CLASSES, outputs, results, HISTORY,
        keys_by_split=keys, load_image=lambda split, i: images[i],
    )  # fmt: skip
    return outputs, results


def test_reports_are_written_and_non_empty(tmp_path):
    workdir = str(tmp_path / "run1")
    outputs, results = _write(workdir, _config())
    test = results["splits"]["test"]
    assert test["per_class"]["dog"]["support"] == int((outputs["test"]["labels"] == 1).sum())
    assert test["highest_loss"][0]["key"].startswith("test/")
    expected = {"training_curves", "misclassified_test"} | {
        f"{kind}_{s}" for kind in ("confusion", "roc", "pr") for s in ("val", "test")
    }
    written = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(workdir, "report"))}
    assert written == expected
    for name in expected:
        path = os.path.join(workdir, "report", f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        image = np.asarray(Image.open(path).convert("L"), np.float32)
        assert image.shape[0] > 100 and image.std() > 5, name  # Something is drawn.
    assert sorted(results["report"]["plots"]) == sorted(f"report/{n}.png" for n in expected)
    text = open(os.path.join(workdir, "classification_report.txt")).read()
    for needle in ("train: 90 examples", "test: 30 examples", "macro avg", "Most confused",
                   "Highest loss", "horse"):  # fmt: skip
        assert needle in text
    json.dumps(results)


def test_report_images_go_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    workdir = str(tmp_path / "run1")
    _write(workdir, _config())
    acc = event_accumulator.EventAccumulator(
        os.path.join(workdir, "tensorboard"), size_guidance={"tensors": 0, "images": 0}
    )
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["images"])
    assert {"report/training_curves", "report/confusion_test", "report/misclassified_test"} <= tags


def test_training_curves_mark_the_fine_tuning_boundary():
    assert plots.phase_boundaries(HISTORY) == [(2.5, "fine_tune")]
    assert plots.phase_boundaries([{"epoch": 1}, {"epoch": 2}]) == []
    fig = plots.training_curves(HISTORY)
    for ax in fig.axes:
        xs = [tuple(line.get_xdata()) for line in ax.lines]
        assert (2.5, 2.5) in xs  # The vertical boundary line.
    labels = [line.get_label() for line in fig.axes[2].lines]
    assert "val" in labels and "train" not in labels  # No train F1 in the history.


def test_pretrained_tag_comes_from_the_results_or_the_config():
    config = _config()
    assert runs.pretrained_tag(config, {"init": {"tag": "timm:x", "path": "/f"}}) == "timm:x"
    assert runs.pretrained_tag(config, {}) == "timm:demo"  # From config.init.
    assert runs.pretrained_tag(ml_collections.ConfigDict(), {"init": None}) == ""


def test_runs_table_appends_one_row_per_run(tmp_path):
    table_dir = tmp_path / "runs"
    _write(str(tmp_path / "a"), _config(str(table_dir)))
    _, results = _write(str(tmp_path / "b"), _config(str(table_dir)))
    with open(table_dir / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert rows[0]["model"] == "cnn_small" and rows[0]["pretrained"] == "timm:demo"
    assert float(rows[1]["test_accuracy"]) == pytest.approx(
        results["splits"]["test"]["accuracy"], abs=1e-4
    )
    assert float(rows[1]["test_macro_f1"]) == pytest.approx(
        results["splits"]["test"]["macro_avg"]["f1"], abs=1e-4
    )
    assert float(rows[1]["images_per_sec"]) == pytest.approx(123.4)
    assert float(rows[1]["wall_seconds"]) > 0
    # A row with a new column rewrites the header and keeps the old rows.
    runs.append_row(str(table_dir / "runs.csv"), {"run_id": "c", "new_column": 1})
    with open(table_dir / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == ["a", "b", "c"]
    assert rows[2]["new_column"] == "1" and rows[0]["new_column"] == ""


def test_runs_table_defaults_to_the_workdirs_parent(tmp_path):
    assert runs.runs_table_path(str(tmp_path / "w"), _config()) == str(tmp_path / "runs.csv")
    assert runs.runs_table_path("w", _config("/x/t.csv")) == "/x/t.csv"


# --------------------------------------------------------------------------- cross-dataset
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("jaxcls.models")
    from jaxcls.trainer import run as train
    from tests.test_train import small_config

    workdir = str(tmp_path_factory.mktemp("cross") / "w")
    train.run(small_config(num_epochs=2), workdir)
    return workdir


def _digit_folder(root, names):
    """A folder dataset of real digits: sub-folder names[d] holds 12 images of digit d."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for d, name in enumerate(names):
        if name is None:
            continue
        os.makedirs(os.path.join(root, name))
        for i, image in enumerate(digits.images[digits.target == d][-12:]):
            pixels = np.rint(image * 255 / 16).astype(np.uint8)
            Image.fromarray(np.repeat(pixels[..., None], 3, -1)).save(f"{root}/{name}/{i}.png")
    return root


def test_cross_dataset_renames_drops_and_writes_a_section(trained, tmp_path):
    from jaxcls.trainer import run as train
    from tests.test_train import small_config

    names = ["zero", "1", "2", "3", None, None, None, None, None, "9"]
    folder = _digit_folder(str(tmp_path / "data"), names)
    os.makedirs(f"{folder}/letters")  # A class the model does not know.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f"{folder}/letters/a.png")
    spec = f"folder:{folder}"
    config = small_config(
        **{"eval.dataset": spec, "eval.class_map": "zero:0", "eval.runs_table": str(tmp_path)}
    )
    results = train.run_eval(config, trained)
    section = results["cross_dataset"][spec]
    assert section["class_mapping"]["renamed"] == {"zero": "0"}
    assert section["class_mapping"]["dropped"] == ["letters"]
    assert section["class_mapping"]["missing"] == ["4", "5", "6", "7", "8"]
    assert section["examples"] == 60 and section["dropped_examples"] == 1
    supports = {k: v["support"] for k, v in section["per_class"].items() if v["support"]}
    assert supports == {"0": 12, "1": 12, "2": 12, "3": 12, "9": 12}
    assert section["accuracy"] > 0.5  # Real digits, a trained model (chance is 0.1).
    on_disk = json.load(open(os.path.join(trained, "results.json")))
    assert spec in on_disk["cross_dataset"] and "splits" in on_disk  # A separate section.
    assert any(f.startswith("classification_report_") for f in os.listdir(trained))
    with pytest.raises(ValueError, match="letters"):
        train.run_eval(small_config(**{"eval.dataset": spec, "eval.drop_unknown": False}), trained)
