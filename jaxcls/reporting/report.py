"""The end-of-run report: full metrics into results.json, classification_report.txt, PNG plots in
``{workdir}/report/`` (also as TensorBoard images; figures in `plots`) and a row in the runs table
(`runs`, with optional MLflow).

The final evaluation (:mod:`jaxcls.evaluation.final`) calls `write_reports` once, after
evaluating the best checkpoint on every split; cross-dataset evaluation uses the text report and
figures. Everything here works on plain arrays and dicts, so it is tested without training.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from absl import logging

from jaxcls import files as files_lib
from jaxcls.evaluation import metrics as metrics_lib
from jaxcls.reporting import plots, runs, tensorboard

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------ entry point
def write_reports(
    workdir: str,
    config,
    class_names: list[str],
    outputs: dict,
    results: dict,
    history: list,
    *,
    keys_by_split: dict | None = None,
    load_image: Callable[[str, int], np.ndarray] | None = None,
    write_files: bool = True,
) -> dict:
    """`write_all` on plain data: metrics into ``results['splits']``, then the files."""
    splits = results.setdefault("splits", {})
    for split, out in outputs.items():
        full = metrics_lib.full_metrics(
            out["logits"],
            out["labels"],
            out["losses"],
            class_names=class_names,
            keys=(keys_by_split or {}).get(split),
        )
        splits.setdefault(split, {}).update(full)
    if not write_files:
        return results
    report_dir = os.path.join(workdir, "report")
    files_lib.makedirs(report_dir)
    text = classification_report(outputs, results, class_names)
    files_lib.write_text(os.path.join(workdir, "classification_report.txt"), text)
    figures = make_figures(results, history, class_names, outputs, load_image)
    files = []
    for name, fig in figures.items():
        plots.save(fig, os.path.join(report_dir, f"{name}.png"))
        files.append(f"report/{name}.png")
    results["report"] = {"text": "classification_report.txt", "plots": sorted(files)}
    step = int(results.get("steps_run") or 0)
    _tensorboard_images(workdir, step, [os.path.join(workdir, f) for f in files])
    row = runs.runs_row(workdir, config, results)
    table = runs.runs_table_path(workdir, config)
    try:
        runs.append_row(table, row)
        results["runs_table"] = table
    except OSError as e:  # A read-only or missing shared folder must not fail the run.
        logging.warning("could not append to the runs table %s: %s", table, e)
    runs.log_mlflow(row, workdir)
    return results


# ------------------------------------------------------------------------------- text report
def classification_report(outputs: dict, results: dict, class_names: list[str]) -> str:
    """The human-readable report: per split, scikit-learn's table, then the confusions and the
    examples with the highest loss."""
    parts = []
    for split in [s for s in SPLITS if s in outputs] + [s for s in outputs if s not in SPLITS]:
        out, m = outputs[split], results["splits"][split]
        if not len(out["labels"]):
            continue
        title = (
            f"{split}: {m['count']} examples, accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f}"
        )
        parts.append(
            metrics_lib.classification_report_text(out["labels"], out["logits"], class_names, title)
        )
        topk = [k for k in m if k.startswith("top") and k.endswith("_accuracy")]
        extra = [f"{k} {m[k]:.4f}" for k in topk]
        if m.get("roc_auc_macro") is not None:
            extra.append(f"macro ROC AUC {m['roc_auc_macro']:.4f}")
        if m.get("average_precision_macro") is not None:
            extra.append(f"macro average precision {m['average_precision_macro']:.4f}")
        parts.append(", ".join(extra))
        if m["most_confused"]:
            parts.append("\nMost confused (true -> predicted: count, fraction of the true class)")
            parts += [
                f"  {c['true']} -> {c['predicted']}: {c['count']} ({c['fraction_of_true']:.1%})"
                for c in m["most_confused"]
            ]
        parts.append("\nHighest loss (loss, true, predicted with probability, example)")
        parts += [
            f"  {h['loss']:8.4f}  {h['true']} -> {h['predicted']} ({h['prob_predicted']:.2f})"
            f"  {h.get('key', h['index'])}"
            for h in m["highest_loss"][:10]
        ]
        parts.append("")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------ figures
def make_figures(results, history, class_names, outputs, load_image=None) -> dict:
    """name -> Figure: training curves, and the confusion matrix, ROC and PR curves of every
    split but train (its numbers are in results.json; its plots mostly show memorisation); the
    misclassified grid of the test split (else val) when images can be loaded."""
    figures = {}
    if history:
        figures["training_curves"] = plots.training_curves(history)
    for split, out in outputs.items():
        m = results["splits"][split]
        if split == "train" or not len(out["labels"]):
            continue
        figures[f"confusion_{split}"] = plots.confusion_matrix(
            m["confusion_matrix"], class_names, f"confusion matrix ({split})"
        )
        figures[f"roc_{split}"] = plots.roc_curves(m["roc"], m["roc_auc_macro"], f"ROC ({split})")
        figures[f"pr_{split}"] = plots.pr_curves(
            m["pr"], m["average_precision_macro"], f"precision-recall ({split})"
        )
    shown = next((s for s in ("test", "val") if s in outputs and len(outputs[s]["labels"])), None)
    if load_image is not None and shown:
        figures[f"misclassified_{shown}"] = misclassified_grid(
            outputs[shown], class_names, lambda i: load_image(shown, i), title=shown
        )
    return figures


def misclassified_grid(out: dict, class_names, load, *, title: str = "", limit: int = 24):
    """The most confidently wrong examples, each captioned 'true -> predicted (probability)'."""
    probs = metrics_lib.softmax(np.asarray(out["logits"], np.float64))
    labels = np.asarray(out["labels"])
    preds = probs.argmax(-1)
    wrong = np.flatnonzero(preds != labels)
    wrong = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:limit]
    images, captions = [], []
    for i in wrong:
        try:
            images.append(load(int(i)))
        except Exception as e:  # noqa: BLE001 - a report must not fail on one unreadable file.
            logging.warning("misclassified grid: cannot load example %d: %s", i, e)
            continue
        captions.append(
            f"{class_names[labels[i]]} -> {class_names[preds[i]]} ({probs[i, preds[i]]:.2f})\n"
            f"p(true) {probs[i, labels[i]]:.2f}"
        )
    return plots.image_grid(images, captions, f"misclassified ({title}): true -> predicted")


def original_image(source, key) -> np.ndarray:
    """The example as the user sees it: decoded to uint8 RGB, before any preprocessing."""
    from input_pipeline import decode

    raw = source.load(key)
    if isinstance(raw, bytes | bytearray | memoryview):
        return decode.decode_image(bytes(raw))
    return decode.to_rgb_array(np.asarray(raw))


def _tensorboard_images(workdir: str, step: int, paths: list[str]) -> None:
    """Writes the report PNGs as TensorBoard images (tag ``report/<name>``)."""
    if not paths:
        return
    try:
        writer = tensorboard.open_writer(workdir)
        if isinstance(writer, tensorboard.NoEventFiles):
            return  # no TensorFlow (said once already): the PNGs need not be read back
        from matplotlib import image as mpimg

        images = {}
        for p in paths:
            with files_lib.path(p).open("rb") as f:
                array = mpimg.imread(f, format="png")[..., :3]
            if array.dtype != np.uint8:
                array = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
            images[f"report/{os.path.splitext(os.path.basename(p))[0]}"] = array[None]
        writer.write_images(step, images)
        writer.flush()
        writer.close()
    except Exception as e:  # noqa: BLE001 - TensorBoard is a convenience; the PNGs are written.
        logging.warning("could not write report images to TensorBoard: %s", e)
