"""A weight file as a jaxcls checkpoint step the trainer can start from (the library half of
``tools/convert_weights.py``).

`convert` reads the file without executing anything from it (`readers`), maps every tensor
strictly into the model (`convert.create_pretrained`), prints what it matched, and writes one
checkpoint step in the layout of :mod:`jaxcls.trainer.checkpoint` (``<output>/checkpoints/latest/0``
with items ``state``, ``data``, ``meta``): ``state`` holds ``{'params': ..., 'batch_stats': ...}``
as pure nested dicts (no optimizer state: the trainer builds its own); ``meta`` is the trainer's
meta plus a ``pretrained`` record (tag, source, file sha256, tensors matched) and, with a tag, the
origin's eval pipeline. ``<output>/conversion.json`` lists what was matched and ignored.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jaxcls import files


class UsageError(ValueError):
    """The arguments of a conversion do not make sense (the message names the flag); the command
    line reports it as a usage error."""


def parse_model_kwargs(model_kwargs) -> dict:
    """``model_kwargs`` as a dict: a dict, None, or the JSON text of an object ('' for none)."""
    if not isinstance(model_kwargs, str):
        return dict(model_kwargs or {})
    try:
        parsed = json.loads(model_kwargs) if model_kwargs.strip() else {}
    except json.JSONDecodeError as e:
        raise UsageError(f"--model_kwargs is not JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise UsageError("--model_kwargs must be a JSON object")
    return parsed


def print_report(report, verbose: bool = False) -> None:
    """The conversion's summary line, every matched tensor (``verbose``) and the ignored ones."""
    print(report.summary())
    for ours, theirs, rule in report.matched if verbose else []:
        print(f"  {ours:<50} <- {theirs} [{rule}]")
    if report.ignored:
        print(
            f"  ignored: {', '.join(report.ignored[:8])}{' ...' if len(report.ignored) > 8 else ''}"
        )


def default_contract(source: str, model_name: str):
    """``(tag, Preprocessing)`` of the origin's default contract for an untagged ``source`` file
    of ``model_name`` (a registry name or alias), or None (`registry.default_contract`)."""
    from jaxcls import models
    from jaxcls.weights import registry

    try:
        canonical = models.model_info(model_name).name
    except ValueError:
        canonical = model_name
    return registry.default_contract(source, model_name) or registry.default_contract(
        source, canonical
    )


def contract(model_name, source, entry, eval_pipeline: str = "") -> tuple[int, str, str]:
    """``(input size, eval pipeline, where it comes from)`` of a converted file: the user's
    ``eval_pipeline``, else the tag's contract, else the origin's default for the architecture;
    raises UsageError when there is none (the user must choose)."""
    from input_pipeline import pp

    if entry is not None:
        pre, origin = entry.preprocessing, f"the contract of {entry.tag}"
    elif found := default_contract(source, model_name):
        pre, origin = found[1], f"{source}'s default for {model_name} ({found[0]})"
    else:
        pre, origin = None, ""
    if eval_pipeline:  # its output size, on a large photo: the model's input size
        out = pp.parse(eval_pipeline)(np.zeros((1024, 1536, 3), np.uint8))
        if out.shape[0] != out.shape[1]:
            raise UsageError(f"--eval_pipeline={eval_pipeline!r} must give a square image")
        return int(out.shape[0]), eval_pipeline, "--eval_pipeline"
    if pre is None:
        raise UsageError(
            f"no default preprocessing is known for a {source} file of {model_name}: pass "
            "--tag=TAG (jaxcls.weights.registry.list_tags(model=...)) or --eval_pipeline=..."
        )
    return pre.input_size, pre.eval_pipeline(exact=True), origin


def checkpoint_meta(
    model_name, kwargs, num_classes, entry, tag, source, path, report, eval_pipeline=""
) -> dict:
    """The meta of a converted checkpoint: the trainer's fields plus the ``pretrained`` record."""
    from jaxcls.weights import registry

    size, pipeline, origin = contract(model_name, source, entry, eval_pipeline)
    return {
        "model": model_name,
        "model_kwargs": kwargs,
        "model_dtype": "float32",
        "num_classes": num_classes,
        "class_names": [str(i) for i in range(num_classes)],
        "image_size": [size, size],
        "eval_pipeline": pipeline,
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
            "preprocessing": origin,
        },
    }


def write_checkpoint(output: str, model, meta: dict) -> str:
    """Writes step 0 of ``output``'s latest checkpoints: ``model``'s parameters and BatchNorm
    statistics as the ``state`` item (no data state), ``meta`` as the ``meta`` item. Returns the
    step folder."""
    from flax import nnx

    from jaxcls.trainer import checkpoint as ckpt_lib

    state = {
        "params": nnx.state(model, nnx.Param).to_pure_dict(),
        "batch_stats": nnx.state(model, nnx.BatchStat).to_pure_dict(),
    }
    store = ckpt_lib.Checkpoints(ckpt_lib.checkpoints_dir(output), keep=1, async_save=False)
    try:
        store.save(0, state, None, meta)
        store.wait()
    finally:
        store.close()
    return os.path.join(ckpt_lib.checkpoints_dir(output), ckpt_lib.LATEST, "0")


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
    eval_pipeline="",
) -> dict:
    """Does the conversion and writes the checkpoint; returns the meta written.

    ``model_kwargs`` (a dict, or the JSON text of one) adds to or overrides the tag's model
    arguments. The eval preprocessing recorded is ``eval_pipeline`` if given, else the tag's
    contract, else the origin's default for the architecture (`contract`). Raises UsageError when neither a file and source nor a tag are given, or for
    ``model_kwargs`` that is not a JSON object.
    """
    from jaxcls.weights import convert as convert_lib
    from jaxcls.weights import registry

    entry = None
    if tag:
        path, entry = registry.resolve_init(tag, path or "")
        source = source or entry.source
    if not path or not source:
        raise UsageError("give --input and --source, or --tag")
    kwargs = {**(entry.model_kwargs if entry else {}), **parse_model_kwargs(model_kwargs)}
    model, report = convert_lib.create_pretrained(
        model_name, source, path, num_classes=num_classes, model_kwargs=kwargs
    )
    print_report(report, verbose)
    meta = checkpoint_meta(
        model_name, kwargs, num_classes, entry, tag, source, path, report, eval_pipeline
    )
    print(f"preprocessing ({meta['pretrained']['preprocessing']}): {meta['eval_pipeline']}")
    step_dir = write_checkpoint(output, model, meta)
    files.write_json(
        os.path.join(output, "conversion.json"),
        {"matched": report.matched, "ignored": report.ignored, **meta},
    )
    print(f"wrote {step_dir}")
    return meta
