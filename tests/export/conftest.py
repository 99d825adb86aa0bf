"""Tiny checkpoints of every model family, written in the trainer's checkpoint layout."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.weights import export_checkpoint

CLASSES = ["cat", "coffee", "person", "rocket"]
# name -> (constructor overrides that shrink depth and width, input size)
FAMILIES = {
    "cnn": ({"filters": (8, 16), "dense": (16,)}, 32),
    "resnet18": ({"stem": "cifar", "depths": (1, 1, 1, 1)}, 32),
    "resnetv2_50": ({"depths": (1, 1, 1, 1)}, 32),
    "mobilenetv2_100": ({"depth_multiplier": 0.1, "channel_multiplier": 0.25}, 32),
    "efficientnet_b0": ({"depth_multiplier": 0.1, "channel_multiplier": 0.25}, 32),
    "densenet121": ({"block_config": (1, 1, 1, 1), "growth_rate": 8}, 32),
    "vgg11_bn": ({"cfg": ((8,), (16,), (16,), (16,), (16,)), "mlp_hidden": 32}, 32),
    "inception_v3": ({}, 75),
}


def perturbed(model, seed=0, scale=0.05):
    """Noise on every parameter and BatchNorm statistic, so zero-initialised layers do not hide
    an export that drops them."""
    rng = np.random.default_rng(seed)
    for kind in (nnx.Param, nnx.BatchStat):
        state = nnx.state(model, kind)
        flat = state.flat_state()
        for path, var in flat:
            value = np.asarray(var.value)
            noisy = value + scale * rng.standard_normal(value.shape).astype(np.float32)
            var.value = np.abs(noisy) if path[-1] == "var" else noisy
        nnx.update(model, nnx.State.from_flat_path(flat))
    return model


def write_tiny(out: str, name: str, kwargs: dict, size: int, pipeline: str = "") -> str:
    """A converted-style checkpoint (``<out>/checkpoints/latest/0``) of a tiny ``name``."""
    if models.model_info(name).defaults.get("global_pool") == "flatten":
        kwargs = {**kwargs, "input_size": size}
    model = perturbed(
        models.create(name, num_classes=len(CLASSES), rngs=nnx.Rngs(params=0, dropout=1), **kwargs)
    )
    meta = {
        "model": name,
        "model_kwargs": kwargs,
        "model_dtype": "float32",
        "num_classes": len(CLASSES),
        "class_names": CLASSES,
        "image_size": [size, size],
        "eval_pipeline": pipeline
        or f"decode|resize_small({size + 4})|center_crop({size})|normalize('imagenet')",
        "train_pipeline": "",
        "dataset": "",
        "history": [],
        "stopped_early": False,
        "config": {},
    }
    export_checkpoint.write_checkpoint(out, model, meta)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """``fn(name) -> checkpoint dir`` (cached per family)."""
    made = {}

    def make(name):
        if name not in made:
            kwargs, size = FAMILIES[name]
            made[name] = write_tiny(str(tmp_path_factory.mktemp(name)), name, dict(kwargs), size)
        return made[name]

    return make
