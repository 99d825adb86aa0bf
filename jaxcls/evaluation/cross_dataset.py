"""Cross-dataset evaluation (``--mode=eval --config.eval.dataset=SPEC``): a run's best checkpoint
on another dataset, its classes matched to the model's by name after a class map.

It reuses the training run's pieces: the source factory and bad-file scan of the input pipeline,
the one class-map parser, the best-checkpoint restore, the eval loop (and its batch size) and the
report writers. The result goes to ``results.json['cross_dataset'][SPEC]``, with its own text
report and plots.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import jax
import numpy as np
from absl import logging

from input_pipeline import pipeline, sources, splits
from input_pipeline.splits import Manifest
from jaxcls import files
from jaxcls.evaluation import loop, metrics
from jaxcls.reporting import plots, report
from jaxcls.trainer import setup


def cross_dataset(run, state, eval_config) -> dict:
    """Evaluates the run's best checkpoint on ``eval_config.dataset``; returns results.json.

    The dataset's classes are renamed by ``eval_config.class_map`` (default: the training
    ``data.class_map``) and matched to the model's classes by name; examples of classes the
    model does not know are dropped (``drop_unknown``) or are an error. Every remaining example
    is evaluated with the training eval pipeline.
    """
    spec = eval_config.dataset
    data, mapping, dropped = _dataset(run, eval_config)
    step, best = setup.restore_best(run, state)
    t0 = time.time()
    out = loop.evaluate_split(dataclasses.replace(run, data=data), best.params, best.rest, "test")
    keys = loop.example_keys(dataclasses.replace(run, data=data), "test", len(out["labels"]))
    section = {
        "dataset": spec,
        "checkpoint_step": step,
        "examples": len(data.manifests["test"]),
        "max_per_class": int(eval_config.max_per_class),
        "dropped_examples": dropped,
        "skipped_files": data.skipped,
        "class_mapping": mapping,
        "seconds": round(time.time() - t0, 1),
        **out["metrics"],
        **metrics.full_metrics(
            out["logits"], out["labels"], out["losses"], class_names=data.class_names, keys=keys
        ),
    }
    path = os.path.join(run.workdir, "results.json")
    results = files.read_json(path, {})
    results.setdefault("cross_dataset", {})[spec] = section
    logging.info(
        "cross-dataset %s (step %s): %d examples, accuracy %.4f, macro-F1 %.4f; dropped classes %s",
        spec,
        step,
        section["examples"],
        section["accuracy"],
        section["macro_f1"],
        mapping["dropped"],
    )
    if jax.process_index() == 0:
        _write_files(run.workdir, spec, out, section, data, keys)
        files.write_json(path, results)
    return results


def _dataset(run, eval_config):
    """The other dataset as the run's ``Data`` with one 'test' split in the model's labels;
    also the class mapping and how many readable examples were dropped."""
    data_cfg = run.config.data
    class_map = sources.parse_class_map(eval_config.class_map or data_cfg.class_map)
    # Renaming is done below, by name, for every kind of source: the source lists raw names.
    source = sources.make_source(eval_config.dataset, {**data_cfg.to_dict(), "class_map": None})
    readable, skipped = pipeline.readable_manifest(source, data_cfg)
    model_classes = list(run.data.class_names)
    index, mapping = map_classes(
        source.class_names, model_classes, class_map, drop_unknown=eval_config.drop_unknown
    )
    labels, keep = remap_labels(readable.labels, index)
    manifest = Manifest([readable.keys[i] for i in keep], labels, model_classes, source.key_column)
    # eval.max_per_class: a seeded per-class sample (e.g. CINIC-10's '500 images per class').
    cap, seed = int(eval_config.max_per_class), int(data_cfg.split_seed)
    manifest = splits.subsample(manifest, max_per_class=cap, seed=seed)
    data = dataclasses.replace(
        run.data,
        manifests={"test": manifest},
        source=source,
        source_spec=eval_config.dataset,
        skipped=skipped,
    )
    return data, mapping, int(len(readable.keys) - len(keep))


def map_classes(
    dataset_classes: list[str],
    model_classes: list[str],
    class_map: dict[str, str] | None = None,
    *,
    drop_unknown: bool = True,
) -> tuple[np.ndarray, dict]:
    """How the labels of another dataset become the model's labels.

    Each dataset class is renamed by ``class_map`` (when listed there) and then matched to a model
    class by name, exactly or else ignoring case. Classes the model does not know are dropped
    (``drop_unknown``) or are an error naming them.

    Returns:
      ``(index, info)``: ``index[i]`` is the model label of dataset class ``i`` or -1 (dropped);
      ``info`` records ``renamed``, ``dropped`` and ``missing`` (model classes with no data).
    """
    class_map = dict(class_map or {})
    lower = {name.lower(): j for j, name in enumerate(model_classes)}
    exact = {name: j for j, name in enumerate(model_classes)}
    index = np.full(len(dataset_classes), -1, np.int64)
    renamed, dropped = {}, []
    for i, name in enumerate(dataset_classes):
        target = class_map.get(name, name)
        j = exact.get(target, lower.get(target.lower(), -1))
        if j >= 0 and model_classes[j] != name:
            renamed[name] = model_classes[j]
        if j < 0:
            dropped.append(name)
        index[i] = j
    if dropped and not drop_unknown:
        raise ValueError(
            f"classes {dropped} of the evaluation dataset are not classes of the model "
            f"{list(model_classes)}; map them with config.eval.class_map or set "
            "config.eval.drop_unknown=True"
        )
    if not (index >= 0).any():
        raise ValueError(
            f"no class of the evaluation dataset {list(dataset_classes)} matches a class of the "
            f"model {list(model_classes)}; give config.eval.class_map"
        )
    used = set(index[index >= 0].tolist())
    missing = [name for j, name in enumerate(model_classes) if j not in used]
    return index, {"renamed": renamed, "dropped": dropped, "missing": missing}


def remap_labels(labels: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dataset labels -> (model labels of the kept examples, positions of the kept examples)."""
    mapped = index[np.asarray(labels, np.int64)]
    keep = np.flatnonzero(mapped >= 0)
    return mapped[keep], keep


def _write_files(workdir, spec, out, section, data, keys) -> None:
    """``classification_report_<dataset>.txt`` and the dataset's plots in ``report/``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")[-60:] or "dataset"
    name = f"cross_{slug}"
    splits.write_manifest(os.path.join(workdir, "splits", f"{name}.csv"), data.manifests["test"])
    outputs, results = {name: out}, {"splits": {name: section}}
    class_names = list(data.class_names)
    text = report.classification_report(outputs, results, class_names)
    with files.atomic_open(os.path.join(workdir, f"classification_report_{slug}.txt")) as f:
        f.write(f"Cross-dataset evaluation on {spec}\n{json.dumps(section['class_mapping'])}\n\n")
        f.write(text)
    figures = report.make_figures(results, [], class_names, outputs, None)
    figures[f"misclassified_{name}"] = report.misclassified_grid(
        out, class_names, lambda i: report.original_image(data.source, keys[i]), title=spec
    )
    report_dir = os.path.join(workdir, "report")
    os.makedirs(report_dir, exist_ok=True)
    for fig_name, fig in figures.items():
        plots.save(fig, os.path.join(report_dir, f"{fig_name}.png"))
