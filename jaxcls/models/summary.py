"""Model summaries without allocating a model: parameter counts, GFLOPs, feature shapes, and a
Keras-style per-unit table (the library half of ``python -m jaxcls.models``).

Every model here is built abstractly (`abstract_model`: ``nnx.eval_shape``, shapes and dtypes
only), so describing EfficientNet-B7 costs a trace, not 250 MB.

`summarize` gives one row per backbone unit (`registry.backbone_units`: the stem, each stage, the
remaining top-level modules such as ``conv_head``; the units fine-tuning freezes and unfreezes),
then the head, then an ``other`` row for any parameter in neither (none in the registered
models), then the total. Each row counts trainable parameters (``nnx.Param``) and non-trainable
ones (``nnx.BatchStat``: BatchNorm running mean and variance, which Keras' ``summary()`` counts as
non-trainable) and their size in MB (bytes / 2**20; every parameter is float32). A row's output
shape is that of the ``features`` entry the unit produces (``stem``, ``stage1`` ... ``stageN``,
``pre_logits``; the head's is the logits), ``None`` where the unit has none of its own.

`check_input_size` rejects an input size the model cannot take (a map that shrinks to nothing
anywhere in the forward pass, or a model that refuses the shape) with `InputSizeError`.

FLOPs (`forward_gflops`) come from XLA's HLO cost analysis of the jitted eval-mode forward, traced
with the portable implementations (`layers.portable_kernels`: XLA counts a native kernel's custom
call as no FLOPs) and lowered with abstract inputs: by default the *unoptimised* lowered module (``Lowered.cost_analysis()``),
with ``compiled=True`` the compiled one; always on the CPU backend (a GPU's analysis counts a
cuDNN convolution as no FLOPs). XLA counts a multiply-add as 2 flops, skips the taps that
fall on padding, and includes elementwise ops; papers and timm usually quote GMACs, about half.
"""

from __future__ import annotations

import math

import jax
import jax.extend.core as jex
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import layers, registry
from jaxcls.models.registry import HEAD, HEAD_HIDDEN, STEM_NAMES, backbone_units

# Lists of blocks whose entry i is the model's feature 'stage{i+1}'.
STAGE_LISTS = ("stages", "blocks")


class InputSizeError(ValueError):
    """The model cannot take an input of this size."""


def abstract_model(name: str, num_classes: int = 1000, **overrides) -> nnx.Module:
    """The model built with ``nnx.eval_shape`` (shapes and dtypes only)."""
    return nnx.eval_shape(
        lambda: registry.create(name, num_classes=num_classes, rngs=nnx.Rngs(0), **overrides)
    )


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves; BatchNorm statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _forward_fn(model: nnx.Module):
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state, copy=True)(x, train=False)

    return forward, state


def _input(size: int | tuple[int, int], batch: int = 1, sharding=None) -> jax.ShapeDtypeStruct:
    height, width = (size, size) if isinstance(size, int) else size
    return jax.ShapeDtypeStruct((batch, int(height), int(width), 3), jnp.float32, sharding=sharding)


def _cpu_device():
    """The CPU device, where FLOPs are counted; None when JAX_PLATFORMS leaves the CPU out."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return None


def forward_gflops(
    model: nnx.Module, size: int | tuple[int, int], *, compiled: bool = False
) -> float | None:
    """GFLOPs of one eval-mode forward pass on a ``size`` x ``size`` (or ``(height, width)``)
    image (XLA cost analysis); None if XLA gives no analysis.

    Counted on the CPU backend whatever the default one is: FLOPs are the model's, and a GPU's
    analysis misses the convolutions (cuDNN custom calls count as none; on an H200 it counted
    ResNet-50 as 0.08 GFLOPs) or, for a program not compiled, gives none (JAX 0.11.2 on CUDA)."""
    forward, state = _forward_fn(model)
    cpu = _cpu_device()
    sharding = None if cpu is None else jax.sharding.SingleDeviceSharding(cpu)
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), state
    )
    with layers.portable_kernels():  # native kernels would count as no FLOPs
        lowered = jax.jit(forward).lower(abstract, _input(size, sharding=sharding))
    if not compiled:
        gflops = gflops_of(lowered)
        if gflops is not None:
            return gflops
    return gflops_of(lowered.compile())  # a backend that analyses only compiled programs


def train_flops_per_image(forward_gflops: float) -> float:
    """Training FLOPs for one image: forward + backward, 3x the forward pass (`forward_gflops`)."""
    return 3.0 * forward_gflops * 1e9


def train_cost(model: nnx.Module, size: int | tuple[int, int]) -> tuple[float, float]:
    """``(train FLOPs per parameter, train GFLOPs)`` for one ``size`` image (3 x the forward
    pass): how much compute a train step has per unit of the per-parameter work (gradient sum,
    optimizer update) that every data-parallel device repeats, and in all
    (`jaxcls.trainer.parallel.auto_cpu_mesh_size`)."""
    num_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    flops = train_flops_per_image(forward_gflops(model, size))
    return flops / max(num_params, 1), flops / 1e9


def gflops_of(lowered_or_compiled) -> float | None:
    """GFLOPs of a lowered (unoptimised HLO) or compiled computation, by XLA's cost analysis; None
    where the backend gives no analysis (JAX 0.11.2 on CUDA gives none for a lowered program)."""
    analysis = lowered_or_compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"]) / 1e9


def feature_shapes(model: nnx.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the logits and of every ``features`` entry for one image (abstract evaluation)."""
    forward, state = _forward_fn(model)
    logits, feats = jax.eval_shape(forward, state, _input(size))
    return {**{k: tuple(v.shape) for k, v in feats.items()}, "logits": tuple(logits.shape)}


def _jaxprs(jaxpr):
    """``jaxpr`` and every sub-jaxpr of its equations (scan, cond, custom_vjp bodies ...)."""
    yield jaxpr
    for eqn in jaxpr.eqns:
        for sub in jex.jaxprs_in_params(eqn.params):
            yield from _jaxprs(sub)


def check_input_size(model: nnx.Module, size: int, name: str = "") -> dict[str, tuple[int, ...]]:
    """`feature_shapes` after checking that the model can take a ``size`` x ``size`` input.

    Raises InputSizeError when ``size`` < 1, when the forward pass rejects the shape, or when any
    intermediate array of the forward pass has an empty dimension (a map pooled or strided down to
    nothing: the model would still return logits, computed from an empty map).
    """
    what = f"{name or type(model).__name__} cannot take a {size}x{size} input"
    if size < 1:
        raise InputSizeError(f"{what}: the size must be at least 1")
    forward, state = _forward_fn(model)
    try:
        closed, (logits, feats) = jax.make_jaxpr(forward, return_shape=True)(state, _input(size))
    except (ValueError, TypeError) as e:  # the model's own check or a lax shape rule
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputSizeError(f"{what}: {first}") from None
    for jaxpr in _jaxprs(closed.jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                shape = getattr(var.aval, "shape", ())
                if 0 in shape:
                    raise InputSizeError(
                        f"{what}: an intermediate map shrinks to {tuple(shape)} "
                        f"({eqn.primitive.name}); use a larger --size"
                    )
    return {**{k: tuple(v.shape) for k, v in feats.items()}, "logits": tuple(logits.shape)}


def unit_name(unit: tuple) -> str:
    """A unit path as one name: ``('stages', 0)`` -> ``'stages/0'``."""
    return "/".join(map(str, unit))


def unit_features(units: list[tuple], feature_names) -> dict[tuple, str | None]:
    """The ``features`` key each unit produces, or None.

    ``stem`` (and the other stem names) -> ``'stem'``; entry i of a stage list -> ``'stage{i+1}'``;
    a unit named like a feature (VGG's ``pre_logits``) -> that feature; the first module after the
    last stage -> the next stage, where the model has one (EfficientNet's ``conv_head`` is
    ``stage{N+1}``). Units of models that name their blocks otherwise (Inception's ``Mixed_5b`` ...)
    map to nothing.
    """
    names = set(feature_names)
    out: dict[tuple, str | None] = {}
    last_stage = None
    for unit in units:
        key = None
        if len(unit) == 2 and unit[0] in STAGE_LISTS:
            key = f"stage{unit[1] + 1}"
            last_stage = unit[1]
        elif unit[0] in STEM_NAMES:
            key = "stem"
        elif unit[0] in names:
            key = unit[0]
        elif last_stage is not None:
            key = f"stage{last_stage + 2}"
            last_stage = None
        out[unit] = key if key in names and key not in out.values() else None
    return out


def _leaf_sizes(model: nnx.Module, kind) -> list[tuple[tuple, int, int]]:
    """``(path, values, bytes)`` of every ``kind`` variable of ``model``."""
    out = []
    for path, var in nnx.to_flat_state(nnx.state(model, kind)):
        n = math.prod(var.shape)
        out.append((tuple(path), n, n * jnp.dtype(var.dtype).itemsize))
    return out


def _row(unit: str, feature: str | None, shape, trainable=0, non_trainable=0, nbytes=0) -> dict:
    return {
        "unit": unit,
        "feature": feature,
        "shape": shape,
        "trainable": trainable,
        "non_trainable": non_trainable,
        "bytes": nbytes,
        "mb": nbytes / 2**20,
    }


def summarize_model(model: nnx.Module, size: int, name: str = "") -> list[dict]:
    """The per-unit rows of `summarize` for a built (or abstract) model."""
    shapes = check_input_size(model, size, name)
    units = backbone_units(model)
    features = unit_features(units, [k for k in shapes if k != "logits"])
    groups = [*units, (HEAD,)]
    rows = [_row(unit_name(u), features.get(u), shapes.get(features.get(u))) for u in units]
    rows.append(_row(HEAD, "logits", shapes["logits"]))
    other = None
    for kind, column in ((nnx.Param, "trainable"), (nnx.BatchStat, "non_trainable")):
        for path, n, nbytes in _leaf_sizes(model, kind):
            if path[:1] == (HEAD_HIDDEN,):  # the head's hidden layers count in the head row
                path = (HEAD, *path)
            owners = [i for i, g in enumerate(groups) if path[: len(g)] == g]
            if len(owners) > 1:
                raise AssertionError(f"{unit_name(path)} is in units {owners}")
            if owners:
                row = rows[owners[0]]
            else:
                if other is None:
                    other = _row("other", None, None)
                row = other
            row[column] += n
            row["bytes"] += nbytes
            row["mb"] = row["bytes"] / 2**20
    if other is not None:
        rows.append(other)
    total = _row("total", None, None)
    for column in ("trainable", "non_trainable", "bytes"):
        total[column] = sum(r[column] for r in rows)
    total["mb"] = total["bytes"] / 2**20
    return [*rows, total]


def summarize(name: str, size: int | None = None, num_classes: int = 1000) -> list[dict]:
    """Keras-style summary of model ``name`` at ``size`` (default: its registered input size).

    One dict per backbone unit, then ``head``, then ``other`` (only if some parameter is in no
    unit), then ``total`` (the column sums): keys ``unit`` (e.g. ``'stages/0'``), ``feature``
    (the ``features`` key it produces, or None), ``shape`` (that feature's shape for one image, or
    None), ``trainable`` (``nnx.Param`` values), ``non_trainable`` (``nnx.BatchStat`` values),
    ``bytes`` and ``mb`` (bytes / 2**20). Raises ValueError for an unknown name and
    InputSizeError for a size the model cannot take.
    """
    info = registry.model_info(name)
    model = abstract_model(info.name, num_classes)
    return summarize_model(model, size or info.input_size, info.name)
