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

``--name X`` prints a Keras-style summary of one model (canonical name or alias) at ``--size``
(default: its registered input size) and ``--num_classes``, built abstractly like the listing:
one row per backbone unit (the units fine-tuning freezes: ``stem``, ``stages/0`` ...,
e.g. ``conv_head``), then ``head``, then ``other`` if some parameter is in neither, then the total.
Columns: the unit; the ``features`` key it produces (``stem``, ``stage1`` ... ``stageN``; the
head's ``logits``; ``-`` where it has none of its own) and that map's shape for one image;
trainable parameters (``nnx.Param``); non-trainable ones (``nnx.BatchStat``: BatchNorm running
mean and variance, as Keras counts them); and their size in MB (float32 bytes / 2**20). Then the
totals, the GFLOPs of one forward at that size (``--no_flops`` skips them), and the ``features``
entries that no row shows (``pre_logits``).

``--kwargs`` gives the model's architecture arguments as a JSON object (lists become tuples), the
``--config.model.<arg>`` values of a training run, e.g. a Keras-style scratch CNN::

  python -m jaxcls.models --name=cnn --size=224 --num_classes=10 --no_flops \
      --kwargs='{"filters": [32, 64, 128], "padding": "valid", "batch_norm": false,
                 "global_pool": "flatten", "dense": [256], "dropout": 0.5}'

prints its summary; "Trainable params" is the count Keras' ``model.summary()`` shows for the
same layers. A model that flattens its last map is built for ``--size`` (its ``input_size``).

Errors print one line, ``python -m jaxcls.models: error: ...``, and exit with code 2: an unknown
``--name`` (with the close names), ``--kwargs`` that is not a JSON object or names an argument the
model does not take (listing the ones it does) or a value it rejects, a ``--size`` the model
cannot take (a map that shrinks to nothing, a classifier built for another size, a size below
1), ``--num_classes`` below 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jaxcls import models
from jaxcls.models.summary import (
    InputSizeError,
    abstract_model,
    feature_shapes,
    forward_gflops,
    param_count,
    summarize_model,
)

PROG = "python -m jaxcls.models"


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


def _shape(shape) -> str:
    return str(tuple(shape)) if shape is not None else "-"


def describe(
    name: str,
    *,
    num_classes: int,
    size: int | None,
    flops: bool = True,
    compiled: bool = False,
    kwargs: dict | None = None,
    out=None,
) -> None:
    """Prints the Keras-style summary of one model (see the module docstring), built with the
    architecture arguments ``kwargs``.

    Raises ValueError for an unknown name or argument and InputSizeError for a size the model
    cannot take.
    """
    out = out or sys.stdout
    info = models.model_info(name)
    size = info.input_size if size is None else size
    kwargs = models.fill_input_size(info.name, dict(kwargs or {}), size)
    models.check_model_args(info.name, kwargs)
    model = abstract_model(info.name, num_classes, **kwargs)
    rows = summarize_model(model, size, name)  # checks the size before anything is printed
    gflops = forward_gflops(model, size, compiled=compiled) if flops else None
    alias_note = f" (alias of {info.name})" if name != info.name else ""
    aliases = _aliases_by_name().get(info.name, [])
    print(f"{name}{alias_note}: {info.cls.__module__}.{info.cls.__name__}", file=out)
    if aliases:
        print(f"aliases: {', '.join(aliases)}", file=out)
    print(
        f"input {size}x{size}x3 (default {info.input_size}), batch 1, {num_classes} classes; "
        f"default_cam_layer: {model.default_cam_layer}",
        file=out,
    )
    header = (
        f"{'unit':<16} {'feature':<10} {'output shape':<22} {'trainable':>13} "
        f"{'non-trainable':>13} {'MB':>9}"
    )
    rule = "-" * len(header)
    print(header, file=out)
    print(rule, file=out)
    for row in rows:
        if row["unit"] == "total":
            print(rule, file=out)
        blank = row["unit"] == "total"
        feature = "" if blank else row["feature"] or "-"
        shape = "" if blank else _shape(row["shape"])
        print(
            f"{row['unit']:<16} {feature:<10} {shape:<22} "
            f"{row['trainable']:>13,} {row['non_trainable']:>13,} {row['mb']:>9.2f}",
            file=out,
        )
    total = rows[-1]
    count = total["trainable"] + total["non_trainable"]
    per_value = total["bytes"] / max(count, 1)
    print(f"Total params: {count:,} ({total['mb']:.2f} MB)", file=out)
    for label, key in (("Trainable", "trainable"), ("Non-trainable", "non_trainable")):
        print(f"{label} params: {total[key]:,} ({total[key] * per_value / 2**20:.2f} MB)", file=out)
    if gflops is not None:
        how = "compiled" if compiled else "unoptimised HLO"
        print(
            f"GFLOPs: {gflops:.2f} (one eval forward at {size}x{size}, batch 1; XLA cost "
            f"analysis of the {how}, 2 flops per multiply-add)",
            file=out,
        )
    shown = {row["feature"] for row in rows}
    rest = [(k, v) for k, v in feature_shapes(model, size).items() if k not in shown]
    if rest:
        print("other features: " + ", ".join(f"{k} {_shape(v)}" for k, v in rest), file=out)


class _Parser(argparse.ArgumentParser):
    """Errors as one line (no usage text in front) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\n")


def _fail(message) -> int:
    text = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 2


def parse_kwargs(text: str) -> dict:
    """``--kwargs``: a JSON object, its lists as tuples; raises ValueError otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--kwargs is not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"--kwargs must be a JSON object like '{{\"filters\": [32, 64]}}', got {text!r}"
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}


def main(argv=None) -> int:
    p = _Parser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--name", help="summarise one model (canonical name or alias)")
    p.add_argument("--filter", default=None, help="list models whose name contains this")
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--size", type=int, default=None, help="input size for --name")
    p.add_argument("--kwargs", default="", help="architecture arguments of --name as a JSON object")
    p.add_argument("--no_flops", action="store_true", help="skip the FLOPs column / line")
    p.add_argument("--compiled", action="store_true", help="FLOPs of the compiled module (slow)")
    args = p.parse_args(argv)
    if args.num_classes < 1:
        return _fail(f"--num_classes must be at least 1, got {args.num_classes}")
    if args.kwargs and not args.name:
        return _fail("--kwargs needs --name (the model they are arguments of)")
    if args.name:
        try:
            models.model_info(args.name)
            kwargs = parse_kwargs(args.kwargs)
            models.check_model_args(args.name, kwargs)
        except ValueError as e:  # unknown name (with close names) or bad --kwargs
            return _fail(e)
        try:
            describe(
                args.name,
                num_classes=args.num_classes,
                size=args.size,
                flops=not args.no_flops,
                compiled=args.compiled,
                kwargs=kwargs,
            )
        except (InputSizeError, ValueError, TypeError) as e:  # incl. a value the model rejects
            return _fail(e)
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
