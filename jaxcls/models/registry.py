"""The model registry: names (and Keras aliases) -> NNX model classes with default arguments.

Each family module registers its models with `register` when :mod:`jaxcls.models` imports it;
users call the re-exports there. Usage::

    from jaxcls import models
    model = models.create("efficientnet_b0", num_classes=10, rngs=nnx.Rngs(params=0, dropout=1))
    logits, features = model(x, train=True)   # x: [B, H, W, 3] float, NHWC

Every registered model follows one contract:

* ``__call__(x, *, train) -> (logits, features)``; logits ``[B, num_classes]`` float32; features a
  dict with keys, in order, ``'stem'``, ``'stage1'`` ... ``'stageN'`` (4-D NHWC maps) and
  ``'pre_logits'`` (``[B, C]``, after global pooling and the head's hidden layers, before dropout
  and the classifier).
* ``model.head`` is the classifier (``nnx.Linear``); ``model.head_hidden`` the pooling and hidden
  dense layers before it (``jaxcls.models.heads``: the ``head``, ``head_dropout`` and
  ``head_pool`` arguments every model takes); ``model.default_cam_layer`` names the features key
  Grad-CAM uses (the last 4-D map).
* ``train=True`` uses batch statistics (and updates the running ones) and enables dropout and
  drop-path, which draw from the 'dropout' RNG stream (``nnx.reseed(model, dropout=key)``).
* ``dtype`` is the compute dtype; parameters are always float32.

Names follow timm (``resnet50``, ``efficientnet_b0``, ``tf_efficientnet_b3`` ...); Keras application
names are aliases where the architecture (and parameter count) is the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import layers


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A registry entry: the model class, its default constructor arguments, its input size."""

    name: str
    cls: type
    defaults: dict[str, Any]
    input_size: int
    aliases: tuple[str, ...] = ()


HEAD = "head"  # Every model's classifier attribute (``model.head``), by the contract above.
# The head's parts: the classifier and the pooling + hidden dense layers (``jaxcls.models.heads``).
# Fine-tuning trains them with the head; pretrained weights leave the hidden layers fresh.
HEAD_HIDDEN = "head_hidden"
HEAD_PARTS = (HEAD, HEAD_HIDDEN)

# Attribute names of a model's stem: its first backbone unit.
STEM_NAMES = ("stem", "conv_stem", "patch_embed")


def _has_params(module: Any) -> bool:
    return bool(jax.tree.leaves(nnx.state(module, nnx.Param)))


def _unit_rank(name: str, value: Any) -> int:
    if name in STEM_NAMES:
        return 0
    if isinstance(value, list | tuple | nnx.List):
        return 1
    return 2


def backbone_units(model: nnx.Module) -> list[tuple]:
    """Top-level parameter groups of ``model`` in forward order, the head excluded.

    nnx does not keep attribute definition order, so the order is: the stem, then the stage
    sequences (``stages``/``blocks`` lists) by index, then the remaining modules (e.g.
    ``conv_head``). A model can state its own order as a ``unit_order`` tuple of attribute names.
    These are the units fine-tuning freezes and unfreezes (``jaxcls.trainer.finetune``) and the
    rows of the model summary (``jaxcls.models.summary``).
    """
    attrs = {k: v for k, v in vars(model).items() if k not in HEAD_PARTS and not k.startswith("_")}
    order = getattr(model, "unit_order", None)
    if order:
        names = [n for n in order if n in attrs]
    else:
        names = sorted(attrs, key=lambda n: (_unit_rank(n, attrs[n]), n))
    units = []
    for name in names:
        value = attrs[name]
        if isinstance(value, nnx.Param):
            units.append((name,))
        elif isinstance(value, list | tuple | nnx.List):
            for i, item in enumerate(value):
                if isinstance(item, nnx.Module) and _has_params(item):
                    units.append((name, i))
        elif isinstance(value, nnx.Module):
            if _has_params(value):
                units.append((name,))
    return units


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}

# Arguments every model class takes and `create` passes itself.
_COMMON_ARGS = ("num_classes", "rngs", "dtype")

_INIT_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def register(
    name: str,
    cls: type,
    *,
    default_size: int = 224,
    aliases: tuple[str, ...] = (),
    **defaults: Any,
) -> ModelInfo:
    """Registers ``name`` as ``cls(**defaults)``, with ``default_size`` its input resolution.

    The defaults must be keyword arguments of ``cls.__init__`` so a typo fails at import time.
    """
    if name in _REGISTRY or name in _ALIASES:
        raise ValueError(f"model name {name!r} is already registered")
    _check_kwargs(cls, defaults, f"defaults of {name!r}")
    info = ModelInfo(name, cls, dict(defaults), default_size, tuple(aliases))
    _REGISTRY[name] = info
    for alias in aliases:
        if alias in _REGISTRY or alias in _ALIASES:
            raise ValueError(f"alias {alias!r} is already registered")
        _ALIASES[alias] = name
    return info


def _accepted_kwargs(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name
        for p in params.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _check_kwargs(cls: type, kwargs: dict[str, Any], what: str) -> None:
    accepted = _accepted_kwargs(cls) - set(_COMMON_ARGS)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} in {what} for {cls.__name__}; "
            f"accepted: {sorted(accepted)}"
        )


def fill_input_size(name: str, kwargs: dict[str, Any], size) -> dict[str, Any]:
    """``kwargs`` with ``input_size=size`` added when model ``name`` flattens its last map (its
    classifier's width depends on the image size: ``head_pool`` or the CNN's ``global_pool`` is
    'flatten') and ``kwargs`` does not set it. ``size``: a side, (H, W), or None."""
    merged = {**_resolve(name).defaults, **kwargs}
    pools = (merged.get("head_pool"), merged.get("global_pool"))
    if "flatten" not in pools or kwargs.get("input_size") is not None or size is None:
        return dict(kwargs)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return {**kwargs, "input_size": int(h) if h == w else (h, w)}


def model_args(name: str) -> list[str]:
    """The architecture arguments model ``name`` (or alias) takes: its constructor's keyword
    arguments except those `create` passes itself (num_classes, rngs, dtype)."""
    return sorted(_accepted_kwargs(_resolve(name).cls) - set(_COMMON_ARGS))


def all_model_args() -> list[str]:
    """Every architecture argument of every registered model (the union of `model_args`)."""
    names = set()
    for info in _REGISTRY.values():
        names |= _accepted_kwargs(info.cls) - set(_COMMON_ARGS)
    return sorted(names)


def check_model_args(name: str, kwargs: dict[str, Any], *, prefix: str = "") -> None:
    """Raises ValueError naming the arguments of ``kwargs`` model ``name`` does not take, with the
    ones it does (``prefix`` is put before each name, e.g. ``'config.model.'``)."""
    info = _resolve(name)
    accepted = model_args(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{', '.join(prefix + u for u in unknown)}: not an argument of model {name!r} "
            f"({info.cls.__name__}); it takes: {', '.join(accepted)}"
        )


def _resolve(name: str) -> ModelInfo:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _ALIASES:
        return _REGISTRY[_ALIASES[name]]
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, known + sorted(_ALIASES), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(known)}")


def model_info(name: str) -> ModelInfo:
    """The registry entry of a canonical name or alias (raises ValueError if unknown)."""
    return _resolve(name)


def create(
    name: str,
    *,
    num_classes: int = 1000,
    rngs: nnx.Rngs,
    dtype: Any = jnp.float32,
    **overrides: Any,
) -> nnx.Module:
    """Builds the model registered as ``name`` (canonical name or alias).

    Args:
      name: e.g. 'resnet50', 'efficientnet_b0', 'EfficientNetB0' (alias), 'cnn'.
      num_classes: size of the classifier (>= 1).
      rngs: ``nnx.Rngs`` with a 'params' stream (and a 'dropout' stream for training).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32.
      **overrides: constructor arguments that replace the registered defaults (e.g.
        ``drop_rate=0.3``, ``stem='cifar'``, ``filters=(16, 32)``).

    Raises:
      ValueError: unknown name (listing the known names and close matches) or unknown override.
    """
    info = _resolve(name)
    _check_kwargs(info.cls, overrides, f"create({name!r}, ...)")
    kwargs = {**info.defaults, **overrides}

    def build(params_key, dropout_key):
        # Fresh streams named 'params' and 'dropout', so nnx.reseed(model, dropout=...) finds
        # the dropout streams even when the caller's Rngs only has a default stream.
        keys = layers.ParamKeys(nnx.Rngs(params=params_key, dropout=dropout_key))
        return info.cls(num_classes=num_classes, rngs=keys, dtype=dtype, **kwargs)

    keys = (rngs.params(), rngs["dropout"]())
    if isinstance(keys[0], jax.core.Tracer):  # already inside jit / eval_shape: build in place
        return build(*keys)
    # Initialise inside one jit: eagerly, every parameter shape compiles its own initialiser
    # (EfficientNet-B0 took ~30 s on a 2-core CPU). Init runs once, so XLA optimisation is off.
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build(*keys)))
    init = jax.jit(lambda *k: nnx.state(build(*k)), compiler_options=_INIT_COMPILER_OPTIONS)
    return nnx.merge(graphdef, init(*keys))


def list_models(filter: str | Callable[[str], bool] | None = None) -> list[str]:
    """Sorted canonical model names, optionally those containing ``filter`` (or matching it)."""
    names = sorted(_REGISTRY)
    if filter is None:
        return names
    if callable(filter):
        return [n for n in names if filter(n)]
    return [n for n in names if filter in n]


def list_aliases() -> dict[str, str]:
    """Alias -> canonical name (Keras application names such as 'EfficientNetB0')."""
    return dict(sorted(_ALIASES.items()))
