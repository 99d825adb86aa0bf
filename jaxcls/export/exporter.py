"""Checkpoint -> deployable artefact, checked against jaxcls (the library half of tools/export.py).

`export` restores a checkpoint for inference (`jaxcls.explain.inference`), builds the eval-mode
function ``images -> logits`` with the *portable* kernels (XLA's convolution and grouped
depthwise convolution: on CPU the default depthwise kernels are C++ custom calls no other runtime
knows, and the 'patches' convolution is a gather), writes it in the asked format
(`jaxcls.export.formats`), loads the artefact back through that format's own runtime and compares
its logits with jaxcls's on real photos (scikit-image's, or the files given): the maximum relative
difference is reported and a float export whose top-1 class differs on any photo fails (the
artefact is deleted). With ``eval_data`` (a folder with one sub-folder per class) the accuracy of
jaxcls and of the artefact on it are reported, which is how an int8 export's cost is measured.
The metadata JSON (`jaxcls.export.metadata`) is written beside the artefact.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxcls import files
from jaxcls.export import formats, metadata
from jaxcls.export.formats import ExportError
from jaxcls.models.layers import PORTABLE, portable_kernels

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


class ParityError(ExportError):
    """The artefact does not reproduce jaxcls's top-1 classes."""


def inference_fn(loaded) -> Callable:
    """``fn(images) -> logits`` (float32) of a loaded checkpoint in eval mode; the parameters are
    closed over, so converters bake them in as constants."""
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params, rest = loaded.graphdef, loaded.params, loaded.rest

    def fn(images):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits, _ = model(images, train=False)
        return logits.astype(jnp.float32)

    return fn


def photos(prep, images: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """``(names, batch)``: the parity images through the checkpoint's eval preprocessing.

    ``images`` are files; without them scikit-image's photos are used (it ships them)."""
    from input_pipeline import decode

    if images:
        return list(images), np.stack([prep(decode.read_file(p)) for p in images])
    try:
        from skimage import data
    except ImportError:
        raise ExportError(
            "the parity check needs photos: pass --images=FILE,... (or pip install scikit-image)"
        ) from None
    return list(PHOTOS), np.stack([prep(getattr(data, n)()) for n in PHOTOS])


def compare(exported: np.ndarray, reference: np.ndarray) -> dict:
    """Max relative difference (per image, ``max|a - b| / max|b|``, worst image) and top-1s."""
    exported, reference = np.asarray(exported, np.float64), np.asarray(reference, np.float64)
    scale = np.maximum(np.abs(reference).max(axis=1), 1e-12)
    rel = np.abs(exported - reference).max(axis=1) / scale
    top_ref, top_exp = reference.argmax(1), exported.argmax(1)
    return {
        "max_rel_diff": float(rel.max()),
        "top1_jaxcls": top_ref.tolist(),
        "top1_exported": top_exp.tolist(),
        "top1_agree": int((top_ref == top_exp).sum()),
        "images": int(len(reference)),
    }


def eval_folder(folder: str, class_names: list[str]) -> list[tuple[str, int]]:
    """``(path, label)`` of every image of ``folder``'s class sub-folders (named as the
    checkpoint's classes)."""
    from input_pipeline.sources.folder import list_images

    if not os.path.isdir(folder):
        raise ExportError(f"--eval_data={folder}: not a folder (expected one sub-folder per class)")
    subs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    unknown = [d for d in subs if d not in class_names]
    if not subs or unknown:
        raise ExportError(
            f"--eval_data={folder}: sub-folders {unknown or 'none'} are not classes of the "
            f"checkpoint; expected sub-folders named from {class_names[:20]}"
        )
    return [
        (os.path.join(folder, d, p), class_names.index(d))
        for d in subs
        for p in list_images(os.path.join(folder, d))
    ]


def accuracy(runs: dict[str, Callable], prep, examples, batch_size: int = 32, log=print) -> dict:
    """Top-1 accuracy of each ``run(images) -> logits`` on ``examples``; unreadable files are
    skipped and counted. Prints progress every ~10 s."""
    from input_pipeline import decode

    correct = dict.fromkeys(runs, 0)
    seen = skipped = 0
    start = last = time.time()
    for i in range(0, len(examples), batch_size):
        xs, ys = [], []
        for path, label in examples[i : i + batch_size]:
            try:
                xs.append(prep(decode.read_file(path)))
                ys.append(label)
            except decode.DecodeError:
                skipped += 1
        if not xs:
            continue
        x, y = np.stack(xs), np.asarray(ys)
        for name, run in runs.items():
            correct[name] += int((np.asarray(run(x)).argmax(1) == y).sum())
        seen += len(y)
        if time.time() - last > 10:
            last = time.time()
            rate = seen / (last - start)
            eta = (len(examples) - seen - skipped) / max(rate, 1e-9)
            log(f"  eval {seen}/{len(examples)} images, {rate:.1f} img/s, ETA {eta:.0f} s")
    if not seen:
        raise ExportError(f"no readable image in --eval_data ({skipped} skipped)")
    out = {f"accuracy_{k}": v / seen for k, v in correct.items()}
    return {**out, "images": seen, "skipped": skipped}


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def check_output(fmt: str, out: str) -> None:
    """The artefact path must be writable: a file path (a folder path for 'savedmodel')."""
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ExportError(f"--out={out}: folder {parent} does not exist")
    if fmt == "savedmodel" and os.path.isfile(out):
        raise ExportError(f"--out={out} is a file; a SavedModel is a folder")
    if fmt != "savedmodel" and os.path.isdir(out):
        raise ExportError(f"--out={out} is a folder; --format={fmt} writes one file")


@dataclasses.dataclass
class Prepared:
    """A checkpoint ready to export: the loaded model, its preprocessing, the parity photos and
    jaxcls's logits on them (one load for several formats)."""

    loaded: Any
    class_names: list[str]
    prep: Callable
    photo_names: list[str]
    photos: np.ndarray
    reference_fn: Callable
    reference: np.ndarray


def prepare(checkpoint: str, images: list[str] | None = None, log=print) -> Prepared:
    """Loads ``checkpoint`` and computes jaxcls's logits on the parity photos."""
    import jax

    from jaxcls.explain import inference
    from jaxcls.explain.predict import class_names_for

    loaded = inference.load_for_inference(checkpoint)
    prep = loaded.preprocess_fn()
    log(f"model {loaded.meta['model']} from {loaded.step_dir}")
    log(f"preprocessing: {loaded.eval_pipeline}")
    names, x = photos(prep, images)
    # The reference is jaxcls as it runs by default (native kernels where they apply).
    reference_fn = jax.jit(inference_fn(loaded))
    reference = np.asarray(reference_fn(x))
    return Prepared(
        loaded, class_names_for(loaded.class_names), prep, names, x, reference_fn, reference
    )


def export(
    checkpoint: str | Prepared,
    fmt: str,
    out: str,
    *,
    quantize: str = "",
    eval_data: str = "",
    images: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Exports ``checkpoint`` (a path, or `prepare`'s result) to ``out`` in ``fmt``; returns the
    metadata written beside it.

    Raises:
      ExportError: an unsupported combination, a bad path, a converter failure (one line).
      ParityError: a float artefact whose top-1 classes differ from jaxcls's (artefact removed).
    """
    formats.check_format(fmt, quantize)
    check_output(fmt, out)
    if quantize and not eval_data:
        raise ExportError(
            f"--quantize={quantize} needs --eval_data=DIR (a folder with one sub-folder per "
            "class) to report the accuracy it costs"
        )
    p = checkpoint if isinstance(checkpoint, Prepared) else prepare(checkpoint, images, log)
    loaded, x, reference = p.loaded, p.photos, p.reference
    examples = eval_folder(eval_data, p.class_names) if eval_data else []
    with portable_kernels():
        fn = inference_fn(loaded)
        t = time.time()
        log(f"writing {fmt}{' (' + quantize + ')' if quantize else ''} to {out} ...")
        try:
            formats.write(fmt, fn, loaded.image_size, out, quantize)
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001 -- a converter's failure, reported in one line.
            _remove(out)
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ExportError(
                f"{fmt} cannot express model {loaded.meta['model']}: {type(e).__name__}: {first}"
            ) from e
    seconds = time.time() - t
    run = formats.load(fmt, out)
    check = compare(run(x), reference)
    # A second batch size through the same artefact: the batch dimension is not fixed.
    check["batch_sizes"] = [len(x), 1]
    single = compare(run(x[:1]), reference[:1])
    check["max_rel_diff"] = max(check["max_rel_diff"], single["max_rel_diff"])
    check["photos"] = p.photo_names
    size = files.size_bytes(out)
    log(
        f"wrote {out}: {size / 1e6:.2f} MB in {seconds:.1f} s; parity on {len(x)} photos: "
        f"max relative difference {check['max_rel_diff']:.2e}, top-1 agree "
        f"{check['top1_agree']}/{check['images']}"
    )
    if check["top1_agree"] != check["images"] and not quantize:
        _remove(out)
        raise ParityError(
            f"{fmt} artefact's top-1 classes {check['top1_exported']} differ from jaxcls's "
            f"{check['top1_jaxcls']} on {p.photo_names}; artefact removed"
        )
    meta = metadata.build(loaded, fmt, out, quantize, dict(PORTABLE), p.class_names)
    meta.update(size_bytes=size, seconds=round(seconds, 2), parity=check)
    if examples:
        acc = accuracy({"jaxcls": p.reference_fn, fmt: run}, p.prep, examples, log=log)
        if quantize:
            acc["accuracy_change"] = acc[f"accuracy_{fmt}"] - acc["accuracy_jaxcls"]
        meta["eval"] = {"data": os.path.abspath(eval_data), **acc}
        log(
            f"eval on {acc['images']} images of {eval_data}: jaxcls {acc['accuracy_jaxcls']:.4f}, "
            f"{fmt}{' ' + quantize if quantize else ''} {acc[f'accuracy_{fmt}']:.4f}"
        )
    path = metadata.metadata_path(out)
    files.write_json(path, meta)
    log(f"wrote {path}")
    return meta
