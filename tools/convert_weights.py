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

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def convert(
    model_name,
    source,
    path,
    output,
    *,
    tag="",
    num_classes=1000,
    model_kwargs=None,
    verbose=False,
) -> dict:
    """Does the conversion and writes the checkpoint; returns the meta written.

    ``model_kwargs`` (a dict, or the JSON text of one) adds to or overrides the tag's model
    arguments.
    """
    from flax import nnx

    from jaxcls.trainer import checkpoint as ckpt_lib
    from jaxcls.weights import convert as convert_lib
    from jaxcls.weights import registry

    entry = None
    if tag:
        path, entry = registry.resolve_init(tag, path or "")
        source = source or entry.source
    if not path or not source:
        raise app.UsageError("give --input and --source, or --tag")
    if isinstance(model_kwargs, str):
        try:
            model_kwargs = json.loads(model_kwargs) if model_kwargs.strip() else {}
        except json.JSONDecodeError as e:
            raise app.UsageError(f"--model_kwargs is not JSON: {e}") from None
        if not isinstance(model_kwargs, dict):
            raise app.UsageError("--model_kwargs must be a JSON object")
    kwargs = {**(entry.model_kwargs if entry else {}), **(model_kwargs or {})}
    model, report = convert_lib.create_pretrained(
        model_name, source, path, num_classes=num_classes, model_kwargs=kwargs
    )
    print(report.summary())
    for ours, theirs, rule in report.matched if verbose else []:
        print(f"  {ours:<50} <- {theirs} [{rule}]")
    if report.ignored:
        print(
            f"  ignored: {', '.join(report.ignored[:8])}{' ...' if len(report.ignored) > 8 else ''}"
        )
    params = nnx.state(model, nnx.Param).to_pure_dict()
    stats = nnx.state(model, nnx.BatchStat).to_pure_dict()
    size = entry.preprocessing.input_size if entry else 224
    meta = {
        "model": model_name,
        "model_kwargs": kwargs,
        "model_dtype": "float32",
        "num_classes": num_classes,
        "class_names": [str(i) for i in range(num_classes)],
        "image_size": [size, size],
        "eval_pipeline": entry.preprocessing.eval_pipeline() if entry else "",
        "train_pipeline": "",
        "dataset": "",
        "history": [],
        "stopped_early": False,
        "config": {},
        "pretrained": {
            "tag": tag,
            "source": source,
            "file": os.path.abspath(path),
            "sha256": registry.file_digest(path),
            "tensors_matched": len(report.matched),
            "values": report.num_params,
            "skipped_head": report.skipped_head,
        },
    }
    store = ckpt_lib.Checkpoints(os.path.join(output, "checkpoints"), keep=1, async_save=False)
    try:
        store.save(0, {"params": params, "batch_stats": stats}, None, meta)
        store.wait()
    finally:
        store.close()
    with open(os.path.join(output, "conversion.json"), "w") as f:
        json.dump({"matched": report.matched, "ignored": report.ignored, **meta}, f, indent=1)
    print(f"wrote {os.path.join(output, 'checkpoints', 'latest', '0')}")
    return meta


def main(argv) -> None:
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO.
    convert(
        _MODEL.value,
        _SOURCE.value,
        _INPUT.value,
        _OUTPUT.value,
        tag=_TAG.value,
        num_classes=_NUM_CLASSES.value,
        model_kwargs=_MODEL_KWARGS.value,
        verbose=_VERBOSE.value,
    )


if __name__ == "__main__":
    app.run(main)
