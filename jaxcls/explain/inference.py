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
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.weights import assign


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
        """The checkpoint's eval preprocessing. A converted file that records none (converted
        before files got their origin's contract) gets its origin's default for the architecture
        (``weights.export_checkpoint.default_contract``); otherwise the trainer's default."""
        from input_pipeline import pipeline
        from jaxcls.weights import export_checkpoint

        if self.meta.get("eval_pipeline"):
            return self.meta["eval_pipeline"]
        source = (self.meta.get("pretrained") or {}).get("source")
        found = export_checkpoint.default_contract(source, self.meta["model"]) if source else None
        if found:
            return found[1].eval_pipeline(self.image_size[0], exact=True)
        return pipeline.default_pipelines(self.image_size)[1]

    def preprocess_fn(self) -> Callable:
        """``fn(raw bytes or array) -> float32 [H, W, 3]``: the exact eval preprocessing."""
        from input_pipeline import pipeline

        return pipeline.eval_transform(self.eval_pipeline, self.image_size)


find_step_dir = ckpt_lib.find_step_dir  # workdir / checkpoints / store / step -> one step


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


def load_for_inference(path: str, *, build: Callable[[dict], nnx.Module] | None = None) -> Loaded:
    """Restores the model of a checkpoint for inference.

    Args:
      path: a training workdir, its ``checkpoints`` folder, or a checkpoint step folder (also a
        converted checkpoint with the same ``meta``/``state`` layout).
      build: ``fn(meta) -> model`` building the architecture (default: the model registry).

    Returns:
      `Loaded`, with the model split into
      ``graphdef, params, rest`` for jitted functional use.
    """
    step_dir = ckpt_lib.find_step_dir(path)
    meta = ckpt_lib.read_meta(step_dir)
    model = (build or build_from_meta)(meta)
    saved = ckpt_lib.read_state(step_dir)
    values = assign.flatten(saved["params"])
    # Training checkpoints hold 'rest' (nnx.State); converted ones 'batch_stats' (pure dicts).
    values.update(assign.flatten(saved.get("rest") or saved.get("batch_stats") or {}))
    assign.assign(
        model, values, what=f"the weights of checkpoint {step_dir}", error=ckpt_lib.CheckpointError
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model = nnx.merge(graphdef, params, rest)
    return Loaded(model, graphdef, params, rest, meta, step_dir)
