"""Lists the model zoo: ``python -m jaxcls.models [--filter resnet] [--name resnet50]``.

Without ``--name`` it prints one row per registered model - its Keras aliases, default input size,
parameter count at ``--num_classes`` (built abstractly with ``nnx.eval_shape``: nothing is
allocated) and the forward pass's GFLOPs for one image at the default size.

FLOPs come from XLA's HLO cost analysis of the jitted eval-mode forward, lowered with abstract
inputs. By default the *unoptimised* lowered module is analysed (``Lowered.cost_analysis()``):
compiling every model (tens of seconds each for the big ones on a small CPU) would not change the
count of convolution and matmul flops, which dominate. ``--compiled`` analyses the compiled module
instead. XLA counts a multiply-add as 2 flops, skips the taps that fall on padding, and includes
elementwise ops (BatchNorm, activations); papers and timm usually quote GMACs, about half of this.
On CPU the depthwise convolutions are written as shifted multiply-adds (see ``depthwise``), counted
the same way.

``--name X`` prints that model's feature-map shapes per stage (the ``features`` dict the model
returns, for one image at the default size, or ``--size``) and its parameter count.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls import models


def abstract_model(name: str, num_classes: int = 1000, **overrides) -> nnx.Module:
    """The model built with ``nnx.eval_shape`` (shapes and dtypes only)."""
    return nnx.eval_shape(
        lambda: models.create(name, num_classes=num_classes, rngs=nnx.Rngs(0), **overrides)
    )


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves; BatchNorm statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _forward_fn(model: nnx.Module):
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state, copy=True)(x, train=False)

    return forward, state


def _input(size: int, batch: int = 1) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)


def forward_gflops(model: nnx.Module, size: int, *, compiled: bool = False) -> float:
    """GFLOPs of one eval-mode forward pass on a ``size`` x ``size`` image (XLA cost analysis)."""
    forward, state = _forward_fn(model)
    lowered = jax.jit(forward).lower(state, _input(size))
    analysis = lowered.compile().cost_analysis() if compiled else lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per device
        analysis = analysis[0]
    return float(analysis["flops"]) / 1e9


def feature_shapes(model: nnx.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the logits and of every ``features`` entry for one image (abstract evaluation)."""
    forward, state = _forward_fn(model)
    logits, feats = jax.eval_shape(forward, state, _input(size))
    return {**{k: tuple(v.shape) for k, v in feats.items()}, "logits": tuple(logits.shape)}


def _aliases_by_name() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, name in models.list_aliases().items():
        out.setdefault(name, []).append(alias)
    return out


def list_table(names, *, num_classes: int, flops: bool, compiled: bool, out=None) -> None:
    out = out or sys.stdout
    aliases = _aliases_by_name()
    how = "compiled" if compiled else "unoptimised HLO"
    print(
        f"{len(names)} models, {num_classes} classes; GFLOPs: XLA cost analysis of the {how} "
        "eval forward, batch 1, default size (2 flops per multiply-add)",
        file=out,
    )
    header = f"{'model':<24} {'aliases':<22} {'size':>4} {'params':>13} {'GFLOPs':>8}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for name in names:
        info = models.model_info(name)
        model = abstract_model(name, num_classes)
        gflops = (
            f"{forward_gflops(model, info.input_size, compiled=compiled):8.2f}"
            if flops
            else "       -"
        )
        print(
            f"{name:<24} {','.join(aliases.get(name, [])):<22} {info.input_size:>4} "
            f"{param_count(model):>13,} {gflops}",
            file=out,
            flush=True,
        )


def describe(name: str, *, num_classes: int, size: int | None, out=None) -> None:
    out = out or sys.stdout
    info = models.model_info(name)
    size = size or info.input_size
    model = abstract_model(info.name, num_classes)
    alias_note = f" (alias of {info.name})" if name != info.name else ""
    aliases = _aliases_by_name().get(info.name, [])
    print(f"{name}{alias_note}: {info.cls.__module__}.{info.cls.__name__}", file=out)
    if aliases:
        print(f"aliases: {', '.join(aliases)}", file=out)
    print(f"parameters: {param_count(model):,} ({num_classes} classes)", file=out)
    print(
        f"default input size: {info.input_size}; default_cam_layer: {model.default_cam_layer}",
        file=out,
    )
    print(f"features at {size}x{size} (batch 1, NHWC):", file=out)
    for key, shape in feature_shapes(model, size).items():
        print(f"  {key:<12} {shape}", file=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jaxcls.models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", help="describe one model (canonical name or alias)")
    p.add_argument("--filter", default=None, help="list models whose name contains this")
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--size", type=int, default=None, help="input size for --name")
    p.add_argument("--no_flops", action="store_true", help="skip the FLOPs column")
    p.add_argument("--compiled", action="store_true", help="FLOPs of the compiled module (slow)")
    args = p.parse_args(argv)
    if args.name:
        describe(args.name, num_classes=args.num_classes, size=args.size)
        return 0
    names = models.list_models(args.filter)
    if not names:
        print(f"no model name contains {args.filter!r}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    list_table(names, num_classes=args.num_classes, flops=not args.no_flops, compiled=args.compiled)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
