"""The end-of-run report: full metrics into results.json, classification_report.txt, PNG plots in
``{workdir}/report/`` (also as TensorBoard images; figures in `plots`), a row in the runs table
(`runs`, with optional MLflow), and the cross-dataset evaluation of
``--mode=eval --config.eval.dataset=...``.

The trainer calls `write_all` once, after evaluating the best checkpoint on every split, and
`cross_dataset` from ``run_eval``. Everything below `write_all` works on plain arrays and dicts,
so it is tested without training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable

import numpy as np
from absl import logging

from jaxcls import evaluate, plots, runs

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------ entry points
def write_all(run, outputs: dict, results: dict, history: list) -> dict:
    """Adds the full metrics of every split to ``results`` and writes the report files.

    Args:
      run: the trainer's ``Run`` (config, workdir, data, mesh).
      outputs: split -> ``{'logits', 'labels', 'losses'}`` from ``train.evaluate_split``.
      results: the results dict about to be written to results.json (changed in place).
      history: the per-epoch rows of the training loop.
    """
    import jax

    data = run.data
    keys_by_split = {}
    for split, out in outputs.items():
        order = manifest_positions(len(out["labels"]), _per_process_batch(run), jax.process_count())
        keys = data.manifests[split].keys
        keys_by_split[split] = [keys[i] for i in order]

    def load_image(split: str, i: int) -> np.ndarray:
        return original_image(data.source, keys_by_split[split][i])

    return write_reports(
        run.workdir,
        run.config,
        list(data.class_names),
        outputs,
        results,
        history,
        keys_by_split=keys_by_split,
        load_image=load_image,
        write_files=jax.process_index() == 0,
    )


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
        full = evaluate.full_metrics(
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
    os.makedirs(report_dir, exist_ok=True)
    text = classification_report(outputs, results, class_names)
    with open(os.path.join(workdir, "classification_report.txt"), "w") as f:
        f.write(text)
    figures = make_figures(results, history, class_names, outputs, load_image)
    files = []
    for name, fig in figures.items():
        files.append(
            os.path.relpath(plots.save(fig, os.path.join(report_dir, f"{name}.png")), workdir)
        )
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
            evaluate.classification_report_text(out["labels"], out["logits"], class_names, title)
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
        figures["training_curves"] = plots.training_curves(
            history, phase_starts_epochs(results) or None
        )
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


def phase_starts_epochs(results: dict) -> list[tuple[float, str]]:
    """Fine-tuning phase boundaries for the training curves, from the trainer's
    ``finetune_phase_starts`` (the first step of each phase): halfway between the last epoch of
    one phase and the first epoch of the next."""
    spe = results.get("steps_per_epoch") or 0
    starts = list(results.get("finetune_phase_starts") or [])[1:]
    if not spe:
        return []
    return [(start / spe + 0.5, "fine-tuning" if i == 0 else f"phase {i + 2}")
            for i, start in enumerate(starts)]  # fmt: skip


def misclassified_grid(out: dict, class_names, load, *, title: str = "", limit: int = 24):
    """The most confidently wrong examples, each captioned 'true -> predicted (probability)'."""
    probs = evaluate.softmax(np.asarray(out["logits"], np.float64))
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
        from clu import metric_writers
        from matplotlib import image as mpimg

        writer = metric_writers.create_default_writer(os.path.join(workdir, "tensorboard"))
        images = {}
        for p in paths:
            array = mpimg.imread(p)[..., :3]
            if array.dtype != np.uint8:
                array = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
            images[f"report/{os.path.splitext(os.path.basename(p))[0]}"] = array[None]
        writer.write_images(step, images)
        writer.flush()
        writer.close()
    except Exception as e:  # noqa: BLE001 - TensorBoard is a convenience; the PNGs are written.
        logging.warning("could not write report images to TensorBoard: %s", e)


# ----------------------------------------------------------------------------- ordering
def _per_process_batch(run) -> int:
    from jaxcls import parallel

    bs = run.config.get("eval_batch_size", 0) or run.config.batch_size
    return parallel.local_batch_size(bs, run.mesh)


def manifest_positions(n: int, batch_per_process: int, processes: int) -> np.ndarray:
    """The manifest row of each example in the order ``train.evaluate_split`` returns them.

    Process ``p`` reads rows ``p, p + P, ...`` in batches of ``batch_per_process``; each global
    batch concatenates the processes' batches and the padding is dropped. With one process the
    order is the manifest's.
    """
    if processes <= 1:
        return np.arange(n)
    total = sum(len(range(p, n, processes)) for p in range(processes))
    if total != n:
        raise ValueError("inconsistent example count")
    order = []
    per = math.ceil(n / processes)
    for b in range(math.ceil(per / batch_per_process)):
        for p in range(processes):
            mine = len(range(p, n, processes))
            for j in range(batch_per_process):
                local = b * batch_per_process + j
                if local < mine:
                    order.append(p + processes * local)
    return np.asarray(order)


# ------------------------------------------------------------------------------ cross-dataset
def cross_dataset(run, state, eval_config) -> dict:
    """Evaluates the run's best checkpoint on another dataset (``eval_config.dataset``).

    The dataset's classes are renamed by ``eval_config.class_map`` (default: the training
    ``data.class_map``) and matched to the model's classes by name; examples of classes the
    model does not know are dropped (``drop_unknown``) or are an error. Every remaining example
    is evaluated with the training eval pipeline. The result goes to
    ``results.json['cross_dataset'][spec]``, with its own text report and plots.
    """
    import jax

    from input_pipeline import catalogue, sources
    from input_pipeline.splits import Manifest
    from jaxcls import checkpoint as ckpt_lib
    from jaxcls import train  # Imported here: train imports this module.

    spec = eval_config.dataset
    data_cfg = (
        run.config.data.to_dict() if hasattr(run.config.data, "to_dict") else dict(run.config.data)
    )
    class_map = evaluate.resolve_class_map(
        eval_config.get("class_map", "") or data_cfg.get("class_map")
    )
    data_cfg["class_map"] = None  # Renaming is done below, for every kind of source.
    source = sources.make_source(spec, data_cfg)
    skipped = []
    if source.is_file_based and data_cfg.get("scan", True):
        skipped = catalogue.scan_bad_files(source, num_threads=data_cfg.get("num_threads", 2))
    bad = {s["key"] for s in skipped}
    rows = [i for i, k in enumerate(source.keys) if k not in bad]
    model_classes = list(run.data.class_names)
    index, mapping = evaluate.map_classes(
        source.class_names,
        model_classes,
        class_map,
        drop_unknown=bool(eval_config.get("drop_unknown", True)),
    )
    labels, keep = evaluate.remap_labels(np.asarray(source.labels)[rows], index)
    keys = [source.keys[rows[i]] for i in keep]
    manifest = Manifest(keys, labels, model_classes, source.key_column)
    data = dataclasses.replace(
        run.data, manifests={"test": manifest}, source=source, source_spec=spec, skipped=skipped
    )
    cross_run = dataclasses.replace(run, data=data)
    abstract = ckpt_lib.abstract_like(state, run.compiled.state_sharding)
    restored = run.checkpoints.restore_best(abstract)
    step, best = (restored[0], restored[1]) if restored else (None, state)
    t0 = time.time()
    out = train.evaluate_split(cross_run, best.params, best.rest, "test")
    order = manifest_positions(len(out["labels"]), _per_process_batch(run), jax.process_count())
    section = {
        "dataset": spec,
        "checkpoint_step": step,
        "examples": len(keys),
        "dropped_examples": int(len(rows) - len(keys)),
        "skipped_files": skipped,
        "class_mapping": mapping,
        "seconds": round(time.time() - t0, 1),
        **out["metrics"],
        **evaluate.full_metrics(
            out["logits"],
            out["labels"],
            out["losses"],
            class_names=model_classes,
            keys=[keys[i] for i in order],
        ),
    }
    path = os.path.join(run.workdir, "results.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results.setdefault("cross_dataset", {})[spec] = section
    logging.info(
        "cross-dataset %s (step %s): %d examples, accuracy %.4f, macro-F1 %.4f; dropped classes %s",
        spec,
        step,
        len(keys),
        section["accuracy"],
        section["macro_f1"],
        mapping["dropped"],
    )
    if jax.process_index() == 0:
        _write_cross_files(run.workdir, spec, out, section, model_classes, source, keys, order)
        train.write_json(path, results)
    return results


def _write_cross_files(workdir, spec, out, section, class_names, source, keys, order) -> None:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")[-60:] or "dataset"
    outputs = {f"cross_{slug}": out}
    results = {"splits": {f"cross_{slug}": section}}
    with open(os.path.join(workdir, f"classification_report_{slug}.txt"), "w") as f:
        f.write(f"Cross-dataset evaluation on {spec}\n{json.dumps(section['class_mapping'])}\n\n")
        f.write(classification_report(outputs, results, class_names))
    report_dir = os.path.join(workdir, "report")
    os.makedirs(report_dir, exist_ok=True)
    figures = make_figures(results, [], class_names, outputs, None)
    figures[f"misclassified_cross_{slug}"] = misclassified_grid(
        out, class_names, lambda i: original_image(source, keys[order[i]]), title=spec
    )
    for name, fig in figures.items():
        plots.save(fig, os.path.join(report_dir, f"{name}.png"))


def cross_dataset_enabled(config) -> bool:
    """True when ``--config.eval.dataset`` names a dataset to evaluate on."""
    return bool(runs.get(config, "eval.dataset", ""))
