"""Rebuild a trained model from a checkpoint for inference (saliency, predict, web app).

Every checkpoint step carries a ``meta`` JSON (model name and arguments, class names, image size,
the eval preprocessing string), so a model can be rebuilt without the training config: create the
registered model from ``meta``, then fill its parameters and BatchNorm statistics from the saved
state. Only ``params`` and ``rest`` are read; the optimizer state is ignored, so this works for a
training checkpoint as well as one written by tools/convert_weights.py (``{'params',
'batch_stats'}``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcls import checkpoint as ckpt_lib


@dataclasses.dataclass
class Loaded:
    """A restored model, split for functional use, with what is needed to feed it."""

    model: nnx.Module
    graphdef: Any
    params: Any
    rest: Any
    meta: dict
    step_dir: str

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.meta["image_size"]
        return int(h), int(w)

    @property
    def eval_pipeline(self) -> str:
        """The checkpoint's eval preprocessing; the trainer's default when it records none (a
        weight file converted without a tag)."""
        from input_pipeline import pipeline

        return self.meta.get("eval_pipeline") or pipeline.default_pipelines(self.image_size)[1]

    def preprocess_fn(self) -> Callable:
        """``fn(raw bytes or array) -> float32 [H, W, 3]``: the exact eval preprocessing."""
        from input_pipeline import pipeline

        return pipeline.eval_transform(self.eval_pipeline, self.image_size)


def _is_step_dir(path: str) -> bool:
    return os.path.exists(os.path.join(path, "meta", "metadata")) and os.path.isdir(
        os.path.join(path, "state")
    )


def _steps_in(path: str) -> list[int]:
    if not os.path.isdir(path):
        return []
    return sorted(
        int(d) for d in os.listdir(path) if d.isdigit() and _is_step_dir(os.path.join(path, d))
    )


def _best_of(best_dir: str, steps: list[int]) -> int:
    """The best step of a ``checkpoints/best`` folder, by the metric its meta names."""
    meta = ckpt_lib.read_meta(os.path.join(best_dir, str(steps[-1])))
    stop = (meta.get("config") or {}).get("early_stopping") or {}
    name, mode = stop.get("metric", "val/accuracy"), stop.get("mode", "max")
    scored = []
    for step in steps:
        path = os.path.join(best_dir, str(step), "metrics", "metrics")
        value = float("nan")
        if os.path.exists(path):
            with open(path) as f:
                value = float(json.load(f).get(name, float("nan")))
        if not np.isnan(value):
            scored.append((value if mode == "max" else -value, step))
    return max(scored)[1] if scored else steps[-1]


def find_step_dir(path: str) -> str:
    """Resolves a workdir, its ``checkpoints`` folder, a ``best``/``latest`` folder or a step
    folder to one checkpoint step folder: the best step when there is one, else the latest."""
    path = os.fspath(path)
    if _is_step_dir(path):
        return path
    for root in (os.path.join(path, "checkpoints"), path):
        best, latest = os.path.join(root, "best"), os.path.join(root, "latest")
        if steps := _steps_in(best):
            return os.path.join(best, str(_best_of(best, steps)))
        if steps := _steps_in(latest):
            return os.path.join(latest, str(steps[-1]))
    if steps := _steps_in(path):
        return os.path.join(path, str(steps[-1]))
    raise ckpt_lib.CheckpointError(
        f"no checkpoint found in {path} (expected a training workdir, its checkpoints/ folder, "
        "or a checkpoint step folder with meta/ and state/)"
    )


def build_from_meta(meta: dict) -> nnx.Module:
    """The registered model described by a checkpoint's meta, with fresh parameters."""
    from jaxcls import models

    return models.create(
        meta["model"],
        num_classes=int(meta["num_classes"]),
        rngs=nnx.Rngs(params=0, dropout=1),
        dtype=jnp.dtype(meta.get("model_dtype", "float32")),
        **dict(meta.get("model_kwargs") or {}),
    )


def _lookup(tree: Any, path: tuple) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key, tree.get(str(key)))
        if tree is None:
            return None
    if isinstance(tree, dict) and "value" in tree:  # nnx.State leaves are saved as {'value': x}.
        tree = tree["value"]
    return tree


def _fill(state: Any, saved: Any, what: str) -> Any:
    """Copies the arrays of ``saved`` (a nested dict) into ``state`` (an nnx.State), strictly.

    Every variable of ``state`` must be found with the same shape, except RNG streams: inference
    does not draw from them, and they keep their fresh values.
    """
    flat = nnx.to_flat_state(state)
    missing, mismatched = [], []
    for path, var in flat:
        value = _lookup(saved, tuple(path))
        name = "/".join(str(p) for p in path)
        if isinstance(var, nnx.RngState):
            continue
        if value is None:
            missing.append(name)
            continue
        value = np.asarray(value)
        if value.shape != var.get_value().shape:
            mismatched.append(f"{name}: saved {value.shape}, model {var.get_value().shape}")
            continue
        var.set_value(jnp.asarray(value, var.get_value().dtype))
    if missing or mismatched:
        raise ckpt_lib.CheckpointError(
            f"the checkpoint's {what} do not fit the model: "
            + "; ".join([f"missing {m}" for m in missing] + mismatched)
        )
    return nnx.from_flat_state(flat)


def load_for_inference(path: str, *, build: Callable[[dict], nnx.Module] | None = None) -> Loaded:
    """Restores the model of a checkpoint for inference.

    Args:
      path: a training workdir, its ``checkpoints`` folder, or a checkpoint step folder (also a
        converted checkpoint with the same ``meta``/``state`` layout).
      build: ``fn(meta) -> model`` building the architecture (default: the model registry).

    Returns:
      `Loaded`, with the model in inference mode (``model.eval()``) and split into
      ``graphdef, params, rest`` for jitted functional use.
    """
    import orbax.checkpoint as ocp

    step_dir = find_step_dir(path)
    meta = ckpt_lib.read_meta(step_dir)
    model = (build or build_from_meta)(meta)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.restore(os.path.join(step_dir, "state"))
    if "params" not in saved:
        raise ckpt_lib.CheckpointError(f"{step_dir}/state has no 'params'")
    params = _fill(params, saved["params"], "parameters")
    # Training checkpoints hold 'rest' (nnx.State); converted ones 'batch_stats' (pure dicts).
    saved_rest = saved.get("rest") or saved.get("batch_stats") or {}
    rest = _fill(rest, saved_rest, "non-parameter state")
    model = nnx.merge(graphdef, params, rest)
    return Loaded(model, graphdef, params, rest, meta, step_dir)
