"""Stage 8 of a run: the best checkpoint on train/val/test -> ``results.json`` and the reports."""

from __future__ import annotations

import os
import time

import jax
from absl import logging

from jaxcls import files
from jaxcls.evaluation import efficiency, loop
from jaxcls.reporting import report
from jaxcls.trainer import feature_cache, setup

SPLITS = ("train", "val", "test")


def final_evaluation(run, state, history: list, stopped_early: bool, filename="results.json"):
    """Evaluates the run's best checkpoint on every split, writes ``filename`` and the reports.

    Args:
      run: the trainer's ``Run``; state: its current train state (the restore target, and the
        state evaluated when no checkpoint was kept).
      history: the per-epoch rows of the training loop; stopped_early: whether it stopped early.

    Returns:
      The results dict written to ``{workdir}/{filename}``.
    """
    best_step, best_state = setup.restore_best(run, state)
    outputs = {}
    for split in SPLITS:
        if not len(run.data.manifests.get(split, ())):
            continue
        rows = feature_cache.eval_rows(run, best_state, split) if run.features else None
        outputs[split] = loop.evaluate_split(
            run, best_state.params, best_state.rest, split, features=rows
        )
        logging.info(
            "%s (best step %s): %s",
            split,
            best_step,
            " ".join(f"{k} {v:.4f}" for k, v in outputs[split]["metrics"].items()),
        )
    results = summary(run, state, stopped_early, best_step)
    results["splits"] = {split: out["metrics"] for split, out in outputs.items()}
    results["history"] = history
    results["wall_seconds"] = round(time.time() - run.started, 1)
    if run.config.efficiency.enabled:
        results["efficiency"] = efficiency.efficiency(run, best_state, best_step)
    write_reports(run, outputs, results, history)
    if jax.process_index() == 0:
        files.write_json(os.path.join(run.workdir, filename), results)
    return results


def summary(run, state, stopped_early: bool, best_step: int | None) -> dict:
    """The run-level keys of results.json (everything but the per-split metrics and history)."""
    steps_run = int(jax.device_get(state.step))
    return {
        "model": run.parts.name,
        "dataset": run.data.source_spec,
        "num_classes": run.data.num_classes,
        "class_names": list(run.data.class_names),
        "num_devices": int(run.mesh.devices.size),
        "num_processes": jax.process_count(),
        "platform": jax.devices()[0].platform,
        "global_batch_size": int(run.config.batch_size),
        "steps_per_epoch": run.steps_per_epoch,
        "steps_run": steps_run,
        "epochs_run": steps_run // run.steps_per_epoch,
        "stopped_early": stopped_early,
        "best_step": best_step,
        "best_metric": run.checkpoints.best_metric,
        "init": run.parts.init,
        "finetune_phase_starts": [p[0] for p in run.parts.phases],
        "train_images_per_sec": files.finite_or_none(run.train_images_per_sec),
        "compile_cache": run.compile_cache,
        "feature_cache": run.features.summary() if run.features is not None else None,
        "bad_steps": int(jax.device_get(state.bad_steps)),
        "skipped_files": list(run.data.skipped),
        "compilations": dict(run.compiled.traces),
    }


def write_reports(run, outputs: dict, results: dict, history: list) -> dict:
    """Full metrics of every split into ``results``, and the report files (process 0 writes).

    Each example is named by its manifest key, and the misclassified grid shows the original
    image, as decoded from the source before any preprocessing.
    """
    keys_by_split = {
        split: loop.example_keys(run, split, len(out["labels"])) for split, out in outputs.items()
    }
    return report.write_reports(
        run.workdir,
        run.config,
        list(run.data.class_names),
        outputs,
        results,
        history,
        keys_by_split=keys_by_split,
        load_image=lambda split, i: report.original_image(run.data.source, keys_by_split[split][i]),
        write_files=jax.process_index() == 0,
    )
