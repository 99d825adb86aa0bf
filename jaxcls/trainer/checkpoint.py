"""Orbax checkpoints: the latest N for resuming, the best N by a validation metric, kept apart.

Each checkpoint step holds three items, written together and atomically (Orbax writes into a
temporary folder and renames it after a commit marker, so a kill mid-save leaves the previous step
intact):

- ``state``: the TrainState pytree (parameters, BatchNorm statistics, optimizer state, step, RNG,
  bad-step counters);
- ``data``: the input iterator's state, one small JSON file per process (grain's handler), so a
  resumed run reads exactly the batches the uninterrupted run would have read next;
- ``meta``: JSON that makes the checkpoint self-describing (model name and arguments, class names,
  the eval preprocessing string, image size), read by eval, predict and saliency tools.

This module is the one place that knows the layout on disk::

    {workdir}/checkpoints/latest/<step>/{state,data,meta}    the latest N, for resuming
    {workdir}/checkpoints/best/<step>/{state,data,meta}      the best N by the validation metric

`find_step_dir`, `read_meta` and `read_state` let inference, weight initialisation and tools open
any of them (or a ``tools/convert_weights.py`` output, which has the same step layout) without a
training config. Latest and best live in separate managers (``checkpoints/latest`` and
``checkpoints/best``):
Orbax's best-by-metric retention can delete the newest steps when the metric worsens, which must
never cost a resume. A NaN metric never counts as an improvement.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
STATE, DATA, META = "state", "data", "meta"


class CheckpointError(RuntimeError):
    """No checkpoint in a directory could be restored."""


def checkpoints_dir(workdir: str) -> str:
    """``{workdir}/checkpoints``: where a training run keeps its checkpoint stores."""
    return os.path.join(os.fspath(workdir), CHECKPOINTS)


class _DataState:
    """Holds an input-iterator state so grain's per-process Orbax handler can save/restore it.

    grain's handler calls ``get_state()`` (bytes for non-grain iterators) on save and
    ``set_state(bytes)`` then ``start_prefetch()`` on restore.
    """

    def __init__(self, state: Any = None):
        self.state = state

    def get_state(self) -> bytes:
        return json.dumps(self.state).encode()

    def set_state(self, raw: bytes) -> None:
        self.state = json.loads(raw)

    def start_prefetch(self) -> None:
        pass


class _DataHandler(grain.checkpoint.CheckpointHandler):
    """grain's handler (one ``process_<i>-of-<n>.json`` per process), which also restores a step
    written by another number of processes: process ``i`` then reads ``process_<i mod n>``'s
    file, and the pipeline (`input_pipeline.pipeline`) accepts it only when the global batch is
    the same, so the resumed run draws exactly the global batches the old one would have."""

    def restore(self, directory, item=None, args=None):
        index, count = jax.process_index(), jax.process_count()
        if (directory / f"process_{index}-of-{count}.json").exists():
            return super().restore(directory, item=item, args=args)
        written = sorted(directory.glob("process_*-of-*.json"))
        if not written:
            raise ValueError(f"{directory} holds no data-iterator state")
        saved_count = int(written[0].name.split("-of-")[1].split(".")[0])
        item = item or args.item
        item.set_state(
            (directory / f"process_{index % saved_count}-of-{saved_count}.json").read_bytes()
        )
        return item


@ocp.args.register_with_handler(_DataHandler, for_save=True)
@dataclasses.dataclass
class _DataSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(_DataHandler, for_restore=True)
@dataclasses.dataclass
class _DataRestore(ocp.args.CheckpointArgs):
    item: Any


def _handlers() -> dict[str, Any]:
    return {
        STATE: ocp.StandardCheckpointHandler(),
        DATA: _DataHandler(),
        META: ocp.JsonCheckpointHandler(),
    }


def abstract_like(tree: Any, sharding: Any) -> Any:
    """Shape/dtype skeleton of ``tree`` with ``sharding`` on every leaf: the restore target.

    Restoring into this places every array on the current mesh, whatever mesh the checkpoint was
    written from (8 devices -> 1, 1 -> 4, ...).
    """
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _metric_value(metrics: dict[str, float], name: str, mode: str) -> float:
    v = float(metrics.get(name, float("nan")))
    if math.isnan(v):  # A NaN is the worst possible value in either mode.
        return -math.inf if mode == "max" else math.inf
    return v


class Checkpoints:
    """The run's checkpoint store (``{workdir}/checkpoints``)."""

    def __init__(
        self,
        directory: str,
        *,
        keep: int = 3,
        keep_best: int = 1,
        best_metric: str = "val/accuracy",
        best_mode: str = "max",
        async_save: bool = True,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        self.directory = os.fspath(directory)
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.latest = ocp.CheckpointManager(
            os.path.join(self.directory, LATEST),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=async_save, create=True
            ),
            item_handlers=_handlers(),
        )
        self.best = ocp.CheckpointManager(
            os.path.join(self.directory, BEST),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep_best,
                best_fn=lambda m: _metric_value(m, best_metric, best_mode),
                best_mode=best_mode,
                keep_checkpoints_without_metrics=False,
                enable_async_checkpointing=async_save,
                create=True,
            ),
            item_handlers=_handlers(),
        )

    # ------------------------------------------------------------------ saving
    @staticmethod
    def _args(state: Any, data_state: Any, meta: dict) -> ocp.args.Composite:
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=_DataSave(_DataState(data_state)),
            meta=ocp.args.JsonSave(meta),
        )

    def save(self, step: int, state: Any, data_state: Any, meta: dict) -> None:
        """Saves to the latest-N store (asynchronously; arrays are copied before returning)."""
        if step in self.latest.all_steps():
            return
        self.latest.save(step, args=self._args(state, data_state, meta), force=True)

    def best_value(self) -> float | None:
        """The best metric value kept so far, or None."""
        step = self.best.best_step()
        if step is None:
            return None
        metrics = self.best.metrics(step) or {}
        return _metric_value(metrics, self.best_metric, self.best_mode)

    def is_improvement(self, metrics: dict[str, float]) -> bool:
        value = _metric_value(metrics, self.best_metric, self.best_mode)
        if math.isinf(value):
            return False
        best = self.best_value()
        if best is None:
            return True
        return value > best if self.best_mode == "max" else value < best

    def save_best(self, step: int, state: Any, data_state: Any, meta: dict, metrics: dict) -> bool:
        """Saves to the best store if ``metrics`` improves on the best so far; returns whether."""
        if not self.is_improvement(metrics):
            return False
        clean = {k: float(v) for k, v in metrics.items()}
        self.best.save(step, args=self._args(state, data_state, meta), metrics=clean, force=True)
        return True

    def best_step(self) -> int | None:
        return self.best.best_step()

    # --------------------------------------------------------------- restoring
    def _restore(self, manager, step: int, abstract_state: Any):
        out = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=_DataRestore(_DataState()),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return out.state, out.data.state, out.meta

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, Any, dict] | None:
        """Restores the newest readable step: ``(step, state, data_state, meta)``, or None if the
        store is empty.

        A step that fails to restore (corrupted or partly deleted files) is reported by number and
        the previous one is tried; if steps exist but none restores, CheckpointError is raised
        rather than silently starting again from step 0.
        """
        self.latest.reload()
        steps = sorted(self.latest.all_steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                state, data_state, meta = self._restore(self.latest, step, abstract_state)
            except Exception as e:  # noqa: BLE001 - any read failure means: try the previous one.
                msg = f"checkpoint step {step} in {self.latest.directory} is unreadable: {e!r}"
                logging.error("%s; falling back to the previous checkpoint", msg)
                errors.append(msg)
                continue
            if errors:
                logging.warning(
                    "restored step %d after %d unreadable checkpoint(s)", step, len(errors)
                )
            return step, state, data_state, meta
        if errors:
            raise CheckpointError(
                "no checkpoint could be restored (delete the workdir's checkpoints/ to start "
                "over):\n  " + "\n  ".join(errors)
            )
        return None

    def restore_best(self, abstract_state: Any) -> tuple[int, Any, Any, dict] | None:
        """Restores the best checkpoint (falls back to the latest when no best was kept)."""
        self.best.reload()
        step = self.best.best_step()
        if step is None:
            return self.restore_latest(abstract_state)
        state, data_state, meta = self._restore(self.best, step, abstract_state)
        return step, state, data_state, meta

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def is_step_dir(path: str) -> bool:
    """Whether ``path`` is one checkpoint step (a folder with ``state/`` and a ``meta`` item)."""
    return os.path.isdir(os.path.join(path, STATE)) and os.path.exists(_meta_file(path))


def _meta_file(step_dir: str) -> str:
    return os.path.join(step_dir, META, "metadata")  # Orbax's JsonCheckpointHandler file name.


def _steps_in(path: str) -> list[int]:
    if not os.path.isdir(path):
        return []
    found = (d for d in os.listdir(path) if d.isdigit() and is_step_dir(os.path.join(path, d)))
    return sorted(int(d) for d in found)


def _best_step(best_dir: str, newest: int) -> int:
    """The best step of a ``best`` store, by the metric and mode its checkpoints' meta names.

    Read through Orbax's own manager (read-only), which knows where it keeps each step's metrics.
    """
    meta = read_meta(os.path.join(best_dir, str(newest)))
    stop = (meta.get("config") or {}).get("early_stopping") or {}
    metric, mode = stop.get("metric", "val/accuracy"), stop.get("mode", "max")
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # Orbax warns that a read-only manager is read-only.
    try:
        options = ocp.CheckpointManagerOptions(
            read_only=True, best_fn=lambda m: _metric_value(m, metric, mode), best_mode=mode
        )
        with ocp.CheckpointManager(best_dir, options=options) as manager:
            step = manager.best_step()
    finally:
        logging.set_verbosity(verbosity)
    return newest if step is None else int(step)


def find_step_dir(path: str) -> str:
    """Resolves a workdir, its ``checkpoints`` folder, a ``best``/``latest`` store or a step
    folder to one step folder: the best step when a best store exists, else the newest."""
    path = os.fspath(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if is_step_dir(path):
        return path
    for root in (checkpoints_dir(path), path):
        best, latest = os.path.join(root, BEST), os.path.join(root, LATEST)
        if steps := _steps_in(best):
            return os.path.join(best, str(_best_step(best, steps[-1])))
        if steps := _steps_in(latest):
            return os.path.join(latest, str(steps[-1]))
    if steps := _steps_in(path):
        return os.path.join(path, str(steps[-1]))
    raise CheckpointError(
        f"no checkpoint found in {path} (expected a training workdir, its checkpoints/ folder, "
        "or a checkpoint step folder with meta/ and state/)"
    )


def read_meta(step_dir: str) -> dict:
    """The ``meta`` JSON of a checkpoint step folder (no arrays are read)."""
    path = _meta_file(step_dir)
    if not os.path.exists(path):
        raise CheckpointError(f"{step_dir} has no meta item (not a jaxcls checkpoint?)")
    with open(path) as f:
        return json.load(f)


def restore_as_numpy(state_dir: str) -> Any:
    """A saved pytree (a step's ``state`` item) as host numpy arrays, whatever number of devices
    wrote it: a checkpoint trained on 2 or 16 CPU devices opens in a 1-device process."""
    with ocp.PyTreeCheckpointer() as checkpointer:
        meta = checkpointer.metadata(state_dir)
        tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return checkpointer.restore(state_dir, restore_args=as_numpy)


def read_state(step_dir: str) -> dict:
    """The saved model variables of a step folder as nested dicts of arrays:
    ``{'params': ..., 'rest': ...}`` (the trainer's) or ``{'params': ..., 'batch_stats': ...}``
    (``tools/convert_weights.py``'s). The optimizer state, when present, is left out."""
    saved = restore_as_numpy(os.path.join(step_dir, STATE))
    if hasattr(saved, "params"):  # A TrainState restored as an object.
        saved = {"params": saved.params, "rest": saved.rest}
    if "params" not in saved:
        raise CheckpointError(f"{step_dir}/{STATE} has no 'params'")
    return {k: saved[k] for k in ("params", "rest", "batch_stats") if k in saved}
