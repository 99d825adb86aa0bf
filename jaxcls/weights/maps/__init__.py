"""Name maps: for each (source framework, model family), our parameter path -> source tensor name.

A map is built from the *target* side: every parameter and BatchNorm statistic of our model is
translated to the name the source framework gives it, together with the layout rule that converts
it (:mod:`jaxcls.weights.layout`). :func:`jaxcls.weights.layout.strict_assign` then checks that the
result is one-to-one. Families register a builder per source here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jaxcls.weights.errors import WeightsError

SOURCES = ("timm", "torchvision", "keras", "efficientnet_pytorch")
# A builder: (model name, {target path: shape}) -> {target path: (source name, rule)}.
Builder = Callable[[str, Mapping[tuple, Any]], dict[tuple, tuple[str, str]]]
_BUILDERS: dict[tuple[str, str], Builder] = {}
# Source-tensor globs each (source, family) deliberately leaves unused.
_IGNORED: dict[tuple[str, str], tuple[str, ...]] = {}


def register(source: str, family: str, *, ignore: tuple[str, ...] = ()):
    """Decorator registering a map builder for one source framework and one model family."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {SOURCES}")

    def wrap(fn: Builder) -> Builder:
        _BUILDERS[(source, family)] = fn
        _IGNORED[(source, family)] = ignore
        return fn

    return wrap


def family_of(model_name: str) -> str:
    """The map family of one of our model names (or Keras aliases)."""
    n = model_name.lower()
    if "efficientnet" in n or n.startswith("mobilenet"):
        return "efficientnet"
    if n.startswith("resnet") and "v2" not in n:
        return "resnet"
    return n.rstrip("0123456789_")


def build(source: str, model_name: str, target: Mapping[tuple, Any]):
    """``(name_map, ignore_patterns)`` for converting ``source`` weights into ``model_name``."""
    from jaxcls.weights.maps import efficientnet, resnet  # noqa: F401  (registers builders)

    family = family_of(model_name)
    fn = _BUILDERS.get((source, family))
    if fn is None:
        known = sorted(f"{s}:{f}" for s, f in _BUILDERS)
        raise WeightsError(
            f"no name map from {source} into {model_name} (family {family}); maps exist for {known}"
        )
    return fn(model_name, target), _IGNORED[(source, family)]


def torch_leaf(path: tuple, shape: tuple) -> tuple[str, str]:
    """The PyTorch tensor name suffix and layout rule for one of our parameter leaves."""
    leaf = path[-1]
    if leaf == "kernel":
        if len(shape) == 2:
            return "weight", "torch_linear"
        depthwise = any(isinstance(p, str) and p.startswith("conv_dw") for p in path[:-1])
        return "weight", "torch_depthwise" if depthwise and shape[2] == 1 else "torch_conv"
    names = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    if leaf not in names:
        raise WeightsError(f"no PyTorch name for parameter {'.'.join(map(str, path))}")
    return names[leaf], "identity"
