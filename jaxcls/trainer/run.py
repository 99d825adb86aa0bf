"""The trainer's entry points, orchestration only: `run` (train or resume, then evaluate) and
`run_eval` (``--mode=eval``: the best checkpoint on every split, or on another dataset).

Stages, top to bottom: `setup.setup_run` (mesh, data, model, optimizer, state) -> `setup.restore`
(the latest checkpoint) -> `loop.train_loop` -> `evaluation.final.final_evaluation` (the best
checkpoint on train/val/test -> results.json and the reports).
"""

from __future__ import annotations

import time

import jax
import ml_collections

from jaxcls.evaluation import cross_dataset, final
from jaxcls.trainer import compile_cache, lock, parallel, progress
from jaxcls.trainer.loop import PREEMPTED_EXIT_CODE, Preempted, TrainingAborted, train_loop
from jaxcls.trainer.setup import create_model, restore, setup_run

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "Preempted",
    "TrainingAborted",
    "create_model",
    "run",
    "run_eval",
]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) and evaluates; returns the results dict also written to results.json."""
    lock.prepare_workdir(workdir)  # A read-only or uncreatable workdir fails before any work.
    with _workdir_lock(config, workdir, "train"):
        return _run(config, workdir)


def _workdir_lock(config: ml_collections.ConfigDict, workdir: str, mode: str):
    """The workdir's lock (`lock.hold`), held by process 0 of the run (JAX distributed first)."""
    parallel.maybe_initialize_distributed(config.distributed)
    return lock.hold(workdir, mode, jax.process_index())


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    progress.quiet_library_logs()
    t0 = time.time()
    cache_dir = compile_cache.enable(config.compilation_cache)
    compile_cache.COUNTER.reset()  # Count this run's programs only.
    the_run, state = setup_run(config, workdir)
    the_run.started = t0
    the_run.compile_cache = {"dir": cache_dir, **compile_cache.COUNTER.snapshot()}
    state, data_state, meta = restore(the_run, state)
    state, history, stopped_early = train_loop(the_run, state, data_state, meta)
    results = final.final_evaluation(the_run, state, history, stopped_early)
    the_run.checkpoints.close()
    return results


def run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """``--mode=eval``: evaluates the workdir's best checkpoint on every split.

    Writes ``results_eval.json`` so the training run's ``results.json`` is never overwritten; with
    ``--config.eval.dataset`` evaluates on that dataset instead (`cross_dataset`).
    """
    lock.prepare_workdir(workdir, create=False)
    with _workdir_lock(config, workdir, "eval"):
        return _run_eval(config, workdir)


def _run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    progress.quiet_library_logs()
    compile_cache.enable(config.compilation_cache)
    the_run, state = setup_run(config, workdir)
    state, _, meta = restore(the_run, state)
    if meta is None:
        raise ValueError(f"no checkpoint in {workdir}/checkpoints to evaluate")
    try:
        if config.eval.dataset:
            return cross_dataset.cross_dataset(the_run, state, config.eval)
        return final.final_evaluation(
            the_run,
            state,
            list(meta.get("history", [])),
            bool(meta.get("stopped_early")),
            filename="results_eval.json",
        )
    finally:
        the_run.checkpoints.close()
