"""Converts a pretrained weight file into a jaxcls checkpoint the trainer can start from.

    python tools/convert_weights.py --model=efficientnet_lite0 --source=efficientnet_pytorch \
        --input=efficientnet-lite0-57934424.pth --output=/tmp/lite0 \
        --tag=efficientnet_pytorch:efficientnet-lite0

Reads the file without executing anything from it (jaxcls.weights.readers), maps every tensor
strictly into the model (every source tensor used, every parameter filled, or an error listing
both sides), prints what it matched, and writes an Orbax checkpoint in the layout of
jaxcls/checkpoint.py (``<output>/checkpoints/latest/0`` with items ``state``, ``data``, ``meta``).
``state`` holds ``{'params': ..., 'batch_stats': ...}`` as pure nested dicts (no optimizer state:
the trainer builds its own); ``meta`` is the trainer's meta plus a ``pretrained`` record (tag,
source, file sha256, tensors matched) and, with ``--tag``, the origin's eval pipeline.
``--tag`` also supplies the model arguments of the origin's conventions (e.g. TF 'SAME' padding);
``--model_kwargs`` (a JSON object) adds or overrides model arguments, e.g. for a file of a
non-standard width::

    python tools/convert_weights.py --model=MobileNetV2 --source=keras --input=m.h5 \
        --output=/tmp/m --num_classes=10 \
        --model_kwargs='{"channel_multiplier": 0.5, "padding": "same_tf", "bn_eps": 0.001}'
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.weights import export_checkpoint  # noqa: E402

_MODEL = flags.DEFINE_string(
    "model", None, "our model name, e.g. efficientnet_lite0", required=True
)
_SOURCE = flags.DEFINE_enum(
    "source", None, ["timm", "torchvision", "keras", "efficientnet_pytorch"], "source naming"
)
_INPUT = flags.DEFINE_string("input", None, "weight file (.pth/.pt/.bin/.safetensors/.h5)")
_OUTPUT = flags.DEFINE_string("output", None, "output directory", required=True)
_TAG = flags.DEFINE_string("tag", "", "pretrained tag, e.g. timm:efficientnet_b0.ra_in1k")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "classifier size")
_MODEL_KWARGS = flags.DEFINE_string(
    "model_kwargs", "", "JSON object of model arguments, over the tag's (recorded in the meta)"
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "print every matched tensor")


def main(argv) -> None:
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO.
    try:
        export_checkpoint.convert(
            _MODEL.value,
            _SOURCE.value,
            _INPUT.value,
            _OUTPUT.value,
            tag=_TAG.value,
            num_classes=_NUM_CLASSES.value,
            model_kwargs=_MODEL_KWARGS.value,
            verbose=_VERBOSE.value,
        )
    except export_checkpoint.UsageError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    app.run(main)
