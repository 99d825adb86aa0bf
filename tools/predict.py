r"""Runs a checkpoint on image files: top-k class names with probabilities.

  python tools/predict.py --checkpoint=DIR IMAGE... [--top_k=5] [--json] [--batch_size=32]

DIR is a training workdir (its best checkpoint), a ``checkpoints`` folder or step folder, or the
output of tools/convert_weights.py. Images are decoded and preprocessed exactly as the checkpoint's
evaluation was (the eval pipeline saved in its meta). A 1000-class head whose class names are plain
indices (converted ImageNet weights) is labelled with the ImageNet class names. An unreadable image
is reported and skipped; the exit code is 1 if any was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard index order (first WordNet lemma)."""
    from importlib import resources

    text = resources.files("jaxcls").joinpath("data/imagenet_classes.txt").read_text()
    names = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(names) == 1000, len(names)
    return names


def class_names_for(meta_names: list[str]) -> list[str]:
    if len(meta_names) == 1000 and meta_names == [str(i) for i in range(1000)]:
        return imagenet_class_names()
    return list(meta_names)


def predict(checkpoint: str, paths: list[str], *, top_k: int = 5, batch_size: int = 32):
    """Returns ``(results, errors)``: per readable image ``{'image', 'top_k': [{'class', 'index',
    'probability'}]}``, and ``{'image', 'error'}`` for the others."""
    import jax
    from flax import nnx

    from input_pipeline import decode
    from jaxcls.explain import inference

    loaded = inference.load_for_inference(checkpoint)
    names = class_names_for(loaded.class_names)
    prep = loaded.preprocess_fn()

    @jax.jit
    def probabilities(params, rest, x):
        model = nnx.merge(loaded.graphdef, params, rest, copy=True)
        logits, _ = model(x, train=False)
        return jax.nn.softmax(logits.astype(np.float32), axis=-1)

    results, errors, ready = [], [], []
    for path in paths:
        try:
            ready.append((path, prep(decode.read_file(path))))
        except decode.DecodeError as e:
            errors.append({"image": path, "error": e.reason})
    k = min(top_k, len(names))
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        x = np.stack([img for _, img in chunk])
        pad = batch_size - len(chunk)  # one shape: one compilation
        if pad and len(ready) > batch_size:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        probs = np.asarray(probabilities(loaded.params, loaded.rest, x))[: len(chunk)]
        for (path, _), p in zip(chunk, probs):
            top = np.argsort(-p)[:k]
            results.append(
                {
                    "image": path,
                    "top_k": [
                        {"class": names[i], "index": int(i), "probability": float(p[i])}
                        for i in top
                    ],
                }
            )
    return results, errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    try:
        results, errors = predict(
            args.checkpoint, args.images, top_k=args.top_k, batch_size=args.batch_size
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"predict: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for r in results:
            print(r["image"])
            for t in r["top_k"]:
                print(f"  {t['probability']:7.4f}  {t['class']} ({t['index']})")
        for e in errors:
            print(f"{e['image']}: SKIPPED ({e['error']})", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
