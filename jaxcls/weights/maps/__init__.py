"""Name maps: for each (source framework, model family), our parameter path -> source tensor name.

A map is built from the *target* side: every parameter and BatchNorm statistic of our model is
translated to the name the source framework gives it, together with the layout rule that converts
it (:mod:`jaxcls.weights.layout`). :func:`jaxcls.weights.layout.strict_assign` then checks that the
result is one-to-one. Families register a builder per source here, optionally with a ``rename``
function that first brings the file's tensor names to one canonical spelling (older torchvision
DenseNet files, Keras 2 era layer names, Keras auto-numbered layers).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from jaxcls.weights.errors import WeightsError

SOURCES = ("timm", "torchvision", "keras", "efficientnet_pytorch")
# A builder: (model name, {target path: shape}) -> {target path: (source name, rule)}.
Builder = Callable[[str, Mapping[tuple, Any]], dict[tuple, tuple[str, str]]]
_BUILDERS: dict[tuple[str, str], Builder] = {}
# Source-tensor globs each (source, family) deliberately leaves unused.
_IGNORED: dict[tuple[str, str], tuple[str, ...]] = {}
# A renamer: source tensor names -> canonical names (applied before the map), see ``rename``.
Renamer = Callable[[list[str]], dict[str, str]]
_RENAMERS: dict[tuple[str, str], Renamer] = {}


def register(
    source: str, family: str, *, ignore: tuple[str, ...] = (), rename: Renamer | None = None
):
    """Decorator registering a map builder for one source framework and one model family.

    ``ignore``: globs of source tensors deliberately left unused. ``rename``: a function from the
    file's tensor names to ``{old: new}`` for those spelled differently from what the map expects.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; known: {SOURCES}")

    def wrap(fn: Builder) -> Builder:
        _BUILDERS[(source, family)] = fn
        _IGNORED[(source, family)] = ignore
        if rename is not None:
            _RENAMERS[(source, family)] = rename
        return fn

    return wrap


def family_of(model_name: str) -> str:
    """The map family of one of our model names or Keras aliases: the name of the module in
    :mod:`jaxcls.models` that defines it (``efficientnet`` also covers MobileNetV2)."""
    from jaxcls import models

    try:
        info = models.model_info(model_name)
    except ValueError as e:
        raise WeightsError(str(e)) from None
    return info.cls.__module__.rpartition(".")[2]


@functools.cache
def _register_all() -> None:
    """Imports every map module of this package once (each registers its builders)."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def build(source: str, model_name: str, target: Mapping[tuple, Any]):
    """``(name_map, ignore_patterns)`` for converting ``source`` weights into ``model_name``."""
    _register_all()
    family = family_of(model_name)
    fn = _BUILDERS.get((source, family))
    if fn is None:
        known = sorted(f"{s}:{f}" for s, f in _BUILDERS)
        raise WeightsError(
            f"no name map from {source} into {model_name} (family {family}); maps exist for {known}"
        )
    return fn(model_name, target), _IGNORED[(source, family)]


def canonical_names(source: str, model_name: str, weights: Mapping[str, Any]) -> dict[str, Any]:
    """``weights`` with its tensors renamed to the spelling the (source, family) map expects.

    Raises WeightsError when two tensors would get the same name."""
    _register_all()
    fn = _RENAMERS.get((source, family_of(model_name)))
    if fn is None:
        return dict(weights)
    renames = fn(list(weights))
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, w in weights.items():
        new = renames.get(name, name)
        if new in out:
            raise WeightsError(f"{source} tensors {origin[new]} and {name} would both be {new}")
        out[new], origin[new] = w, name
    return out


def keras_layer_renamer(old_to_new: Mapping[str, str]) -> Renamer:
    """A ``rename`` for Keras files whose layers an older Keras named differently: ``old/var`` ->
    ``new/var`` for every layer in ``old_to_new``, unless the file also holds a layer ``new``."""

    def rename(names: list[str]) -> dict[str, str]:
        layers = {n.rpartition("/")[0] for n in names}
        out = {}
        for n in names:
            layer, _, var = n.rpartition("/")
            if layer in old_to_new and old_to_new[layer] not in layers:
                out[n] = f"{old_to_new[layer]}/{var}"
        return out

    return rename


def torch_leaf(path: tuple, shape: tuple, *, norm: bool = False) -> tuple[str, str]:
    """The PyTorch tensor name suffix and layout rule for one of our parameter leaves (``norm``:
    whether the leaf belongs to a normalisation layer; PyTorch names it the same either way)."""
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


def keras_leaf(path: tuple, shape: tuple, *, norm: bool = False) -> tuple[str, str]:
    """The Keras variable name and layout rule for one of our parameter leaves.

    ``norm``: the leaf belongs to a normalisation layer, whose ``bias`` Keras calls ``beta``
    (a Conv/Dense bias stays ``bias``).

    Keras 3 calls every kernel ``kernel``, depthwise ones included; the ``depthwise_kernel`` of
    TF-era files is renamed to it when a Keras file is converted
    (:func:`jaxcls.weights.layout.keras_names`), so the depthwise layout rule is chosen here.
    """
    leaf = path[-1]
    if leaf == "kernel":
        if len(shape) == 2:
            return "kernel", "keras_dense"
        depthwise = any(isinstance(p, str) and p.startswith("conv_dw") for p in path[:-1])
        if depthwise and shape[2] == 1:
            return "kernel", "keras_depthwise"
        return "kernel", "keras_conv"
    if leaf == "bias" and not norm:
        return "bias", "identity"
    names = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}
    if leaf not in names:
        raise WeightsError(f"no Keras name for parameter {'.'.join(map(str, path))}")
    return names[leaf], "identity"


def assemble(
    target: Mapping[tuple, Any],
    prefix: Callable[[tuple], str | None],
    *,
    leaf: Callable[..., tuple[str, str]] = torch_leaf,
    sep: str = ".",
    rules: Mapping[tuple, str] | None = None,
) -> dict[tuple, tuple[str, str]]:
    """The name map of every target leaf: ``prefix(module path) + sep + leaf name``.

    ``prefix`` maps one of our module paths (the parameter path without its leaf) to the source
    framework's module name, or returns None where it has none (an error naming the parameter).
    ``leaf(path, shape, norm=...)`` gives the source's leaf name and layout rule
    (:func:`torch_leaf`, :func:`keras_leaf`); ``norm`` says whether the leaf's module is a
    normalisation layer (it has a ``scale`` or a running ``mean``), which Keras names differently.
    ``rules`` overrides the layout rule of named parameter paths (e.g. a Linear stored as a 1x1
    conv, or the BGR fold of a Keras caffe-mode stem).
    """
    norms = {tuple(p[:-1]) for p in target if p[-1] in ("scale", "mean")}
    out = {}
    for path, shape in target.items():
        shape = tuple(getattr(shape, "shape", shape))
        suffix, rule = leaf(path, shape, norm=tuple(path[:-1]) in norms)
        rule = (rules or {}).get(tuple(path), rule)
        module = prefix(tuple(path[:-1]))
        if module is None:
            raise WeightsError(f"no source name for {'.'.join(map(str, path))}")
        out[path] = (f"{module}{sep}{suffix}", rule)
    return out
