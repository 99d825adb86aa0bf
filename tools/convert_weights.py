"""Converts a pretrained weight file into a jaxcls checkpoint the trainer can start from.

    python tools/convert_weights.py --model=efficientnet_lite0 --source=efficientnet_pytorch \
        --input=efficientnet-lite0-57934424.pth --output=/tmp/lite0 \
        --tag=efficientnet_pytorch:efficientnet-lite0

Reads the file without executing anything from it (jaxcls.weights.readers), maps every tensor
strictly into the model (every source tensor used, every parameter filled, or an error listing
both sides), prints what it matched, and writes an Orbax checkpoint in the layout of
jaxcls/trainer/checkpoint.py (``<output>/checkpoints/latest/0`` with items ``state``, ``data``, ``meta``).
``state`` holds ``{'params': ..., 'batch_stats': ...}`` as pure nested dicts (no optimizer state:
the trainer builds its own); ``meta`` is the trainer's meta plus a ``pretrained`` record (tag,
source, file sha256, tensors matched) and the eval pipeline: ``--eval_pipeline`` if given, else
``--tag``'s contract, else the origin's default for the architecture (timm's default pretrained
config, torchvision's DEFAULT weights, the Keras model's); a file with none must choose one.
``--tag`` also supplies the model arguments of the origin's conventions (e.g. TF 'SAME' padding);
``--model_kwargs`` (a JSON object) adds or overrides model arguments, e.g. for a file of a
non-standard width::

    python tools/convert_weights.py --model=MobileNetV2 --source=keras --input=m.h5 \
        --output=/tmp/m --num_classes=10 \
        --model_kwargs='{"channel_multiplier": 0.5, "padding": "same_tf", "bn_eps": 0.001}'

A user error (a missing or unreadable --input, a file whose hash does not match --tag's published
one, an unknown model, tag or source, a malformed flag, tensors that do not fit the model) prints
one line, ``convert_weights: error: ...``, on stderr and exits with code 2.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.trainer.checkpoint import CheckpointError  # noqa: E402
from jaxcls.weights import export_checkpoint  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "convert_weights"
SOURCES = ["timm", "torchvision", "keras", "efficientnet_pytorch"]


def parse_args(argv=None):
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--model", required=True, help="our model name, e.g. efficientnet_lite0")
    p.add_argument("--source", default=None, choices=SOURCES, help="source naming")
    p.add_argument("--input", default=None, help="weight file (.pth/.pt/.bin/.safetensors/.h5)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--tag", default="", help="pretrained tag, e.g. timm:efficientnet_b0.ra_in1k")
    p.add_argument("--num_classes", type=cli.positive_int, default=1000, help="classifier size")
    p.add_argument(
        "--model_kwargs",
        default="",
        help="JSON object of model arguments, over the tag's (recorded in the meta)",
    )
    p.add_argument(
        "--eval_pipeline",
        default="",
        help="eval preprocessing to record (default: the tag's, else the origin's default for "
        "the architecture)",
    )
    p.add_argument("--verbose", action="store_true", help="print every matched tensor")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:  # the flags' values before any file
        export_checkpoint.parse_model_kwargs(args.model_kwargs)
    except export_checkpoint.UsageError as e:
        return cli.fail(TOOL, e)
    if args.input and not os.path.isfile(args.input):
        what = "is a directory" if os.path.isdir(args.input) else "no such file"
        return cli.fail(TOOL, f"--input={args.input}: {what}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        return cli.fail(TOOL, f"--output={args.output} is a file, expected a directory")
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO.
    try:
        export_checkpoint.convert(
            args.model,
            args.source,
            args.input,
            args.output,
            tag=args.tag,
            num_classes=args.num_classes,
            model_kwargs=args.model_kwargs,
            verbose=args.verbose,
            eval_pipeline=args.eval_pipeline,
        )
    # UsageError, WeightsError (unreadable file, hash mismatch, unknown tag, unmatched tensors)
    # and the registry's unknown model or model argument are all ValueErrors.
    except (ValueError, CheckpointError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
