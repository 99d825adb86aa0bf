"""Top-k prediction of image files for a checkpoint (the library half of ``tools/predict.py``).

`predict` decodes and preprocesses each file exactly as the checkpoint's evaluation did (the eval
pipeline saved in its meta) and returns the top-k classes with probabilities; a 1000-class head
whose class names are plain indices (converted ImageNet weights) is labelled with the ImageNet
class names. `print_predictions` prints them, one block per image or one JSON document.
"""

from __future__ import annotations

import functools
import json
import sys

import numpy as np


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard index order (first WordNet lemma)."""
    from importlib import resources

    text = resources.files("jaxcls").joinpath("data/imagenet_classes.txt").read_text()
    names = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(names) == 1000, len(names)
    return names


def class_names_for(meta_names: list[str]) -> list[str]:
    """The checkpoint's class names, or ImageNet's for a 1000-class head named by index."""
    if len(meta_names) == 1000 and meta_names == [str(i) for i in range(1000)]:
        return imagenet_class_names()
    return list(meta_names)


def _read_images(paths: list[str], prep) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """``(ready, errors)``: preprocessed ``(path, image)`` pairs, ``{'image', 'error'}`` for the
    files that do not decode."""
    from input_pipeline import decode

    ready, errors = [], []
    for path in paths:
        try:
            ready.append((path, prep(decode.read_file(path))))
        except decode.DecodeError as e:
            errors.append({"image": path, "error": e.reason})
    return ready, errors


def _top_k(path: str, p: np.ndarray, names: list[str], k: int) -> dict:
    top = np.argsort(-p)[:k]
    return {
        "image": path,
        "top_k": [{"class": names[i], "index": int(i), "probability": float(p[i])} for i in top],
    }


def predict(
    checkpoint: str,
    paths: list[str],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    with_pipeline: bool = False,
):
    """Returns ``(results, errors)``: per readable image ``{'image', 'top_k': [{'class', 'index',
    'probability'}]}``, and ``{'image', 'error'}`` for the others; with ``with_pipeline`` also
    the eval preprocessing string used, ``(results, errors, pipeline)``."""
    import jax
    from flax import nnx

    from jaxcls.explain import inference
    from jaxcls.models import conv

    loaded = inference.load_for_inference(checkpoint)
    names = class_names_for(loaded.class_names)

    @functools.partial(jax.jit, compiler_options=conv.compiler_options())
    def probabilities(params, rest, x):
        model = nnx.merge(loaded.graphdef, params, rest, copy=True)
        logits, _ = model(x, train=False)
        return jax.nn.softmax(logits.astype(np.float32), axis=-1)

    ready, errors = _read_images(paths, loaded.preprocess_fn())
    results = []
    k = min(top_k, len(names))
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        x = np.stack([img for _, img in chunk])
        pad = batch_size - len(chunk)  # one shape: one compilation
        if pad and len(ready) > batch_size:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        probs = np.asarray(probabilities(loaded.params, loaded.rest, x))[: len(chunk)]
        results += [_top_k(path, p, names, k) for (path, _), p in zip(chunk, probs)]
    return (results, errors, loaded.eval_pipeline) if with_pipeline else (results, errors)


def print_predictions(
    checkpoint: str,
    paths: list[str],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    as_json: bool = False,
) -> int:
    """Runs `predict` and prints its results (text on stdout, skipped files on stderr; or one JSON
    document). Returns the exit code: 1 if any image was unreadable, else 0.

    Raises FileNotFoundError or ValueError for a checkpoint that cannot be used.
    """
    results, errors, pipeline = predict(
        checkpoint, paths, top_k=top_k, batch_size=batch_size, with_pipeline=True
    )
    if as_json:
        doc = {"preprocessing": pipeline, "predictions": results, "errors": errors}
        print(json.dumps(doc, indent=2))
    else:
        print(f"preprocessing: {pipeline}")
        for r in results:
            print(r["image"])
            for t in r["top_k"]:
                print(f"  {t['probability']:7.4f}  {t['class']} ({t['index']})")
        for e in errors:
            print(f"{e['image']}: SKIPPED ({e['error']})", file=sys.stderr)
    return 1 if errors else 0
