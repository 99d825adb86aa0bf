r"""Saliency maps of a trained model, overlaid on the original images.

  python tools/saliency.py --checkpoint=DIR --method=gradcam IMAGE... --out=DIR \
      [--layer=stage3] [--target=cat] [--save_npy] [--batch_size=16] [--alpha=0.45]

DIR is a training workdir (its best checkpoint is used), its checkpoints/ folder, or one checkpoint
step folder (also a converted checkpoint). Each image is decoded and preprocessed exactly as in
evaluation (the checkpoint's eval pipeline); the map is computed on the model input and mapped back
onto the original photo (resize and padding undone). For each image and method, writes
OUT/<name>_<method>.png (the overlay) and, with --save_npy, OUT/<name>_<method>.npy (the raw map:
the CAM at the feature map's resolution, or the per-channel input attributions) and
OUT/<name>_<method>_original.npy (the [0, 1] map at the original image size). OUT/saliency.json
lists the predicted and explained class of every image.

Methods: gradcam, gradcampp, gradients, smoothgrad, integrated_gradients (comma-separated for
several). --target explains a chosen class (name or index) instead of the predicted one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from input_pipeline import decode  # noqa: E402
from jaxcls.explain import (
    inference,  # noqa: E402
    overlay,
    saliency,
)
from jaxcls.trainer import checkpoint as ckpt_lib  # noqa: E402


def resolve_target(target: str | None, class_names: list[str]) -> int | None:
    """A class name or index -> index; None for the predicted class."""
    if target is None or target == "":
        return None
    if target in class_names:
        return class_names.index(target)
    if target.lstrip("-").isdigit() and 0 <= int(target) < len(class_names):
        return int(target)
    raise ValueError(f"unknown class {target!r}; the model's classes are {class_names}")


def _unique_stems(paths: list[str]) -> list[str]:
    stems, seen = [], {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        stems.append(stem if n == 0 else f"{stem}_{n}")
    return stems


def explain_files(
    checkpoint: str,
    images: list[str],
    out_dir: str,
    *,
    methods=("gradcam",),
    layer: str | None = None,
    target: str | None = None,
    save_npy: bool = False,
    batch_size: int = 16,
    alpha: float = 0.45,
    loaded: inference.Loaded | None = None,
    **method_options,
) -> list[dict]:
    """Writes overlays (and raw maps) for ``images``; returns one summary dict per image."""
    loaded = loaded or inference.load_for_inference(checkpoint)
    names = loaded.class_names
    explainer = saliency.Explainer(
        loaded.graphdef,
        loaded.params,
        loaded.rest,
        default_layer=getattr(loaded.model, "default_cam_layer", None),
    )
    preprocess = loaded.preprocess_fn()
    cls = resolve_target(target, names)
    os.makedirs(out_dir, exist_ok=True)
    stems = _unique_stems(images)
    summary = []
    for start in range(0, len(images), batch_size):
        paths = images[start : start + batch_size]
        raws = [decode.read_file(p) for p in paths]
        originals = [decode.decode_image(r, path=p) for r, p in zip(raws, paths)]
        x = np.stack([preprocess(r) for r in raws])
        n = len(paths)
        if n < batch_size and start > 0:  # Pad the last batch: one compiled shape per run.
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
        rows = [
            {"image": p, "predicted": None, "probability": None, "explained": {}} for p in paths
        ]
        for method in methods:
            method = saliency.canonical_method(method)
            out = explainer(x, method, target=cls, layer=layer, **method_options)
            for i, original in enumerate(originals):
                stem = stems[start + i]
                geometry = overlay.Geometry.from_pipeline(loaded.eval_pipeline, original.shape[:2])
                heat = overlay.to_original(out["maps"][i], geometry)
                blended = overlay.blend(original, heat, alpha=alpha)
                _write_png(os.path.join(out_dir, f"{stem}_{method}.png"), blended)
                if save_npy:
                    np.save(os.path.join(out_dir, f"{stem}_{method}.npy"), out["raw"][i])
                    np.save(os.path.join(out_dir, f"{stem}_{method}_original.npy"), heat)
                pred = int(out["probs"][i].argmax())
                rows[i]["predicted"] = names[pred]
                rows[i]["probability"] = float(out["probs"][i, pred])
                rows[i]["explained"][method] = names[int(out["classes"][i])]
        summary += rows
    with open(os.path.join(out_dir, "saliency.json"), "w") as f:
        json.dump(
            {
                "checkpoint": loaded.step_dir,
                "layer": layer or explainer.default_layer,
                "images": summary,
            },
            f,
            indent=2,
        )
    return summary


def _write_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--checkpoint", required=True, help="workdir or checkpoint folder")
    parser.add_argument("--method", default="gradcam", help=f"one or more of {saliency.METHODS}")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--layer", default=None, help="feature for Grad-CAM (default: last stage)")
    parser.add_argument("--target", default=None, help="class name or index (default: predicted)")
    parser.add_argument("--save_npy", action="store_true", help="also save the raw maps")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=0.45, help="overlay opacity")
    parser.add_argument("--samples", type=int, default=25, help="SmoothGrad noisy copies")
    parser.add_argument("--noise", type=float, default=0.15, help="SmoothGrad noise level")
    parser.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    args = parser.parse_args(argv)
    try:
        summary = explain_files(
            args.checkpoint,
            args.images,
            args.out,
            methods=[m for m in args.method.split(",") if m],
            layer=args.layer,
            target=args.target,
            save_npy=args.save_npy,
            batch_size=args.batch_size,
            alpha=args.alpha,
            samples=args.samples,
            noise=args.noise,
            steps=args.steps,
        )
    except (ValueError, OSError, ckpt_lib.CheckpointError) as e:
        print(f"saliency: error: {e}", file=sys.stderr)
        return 2
    for row in summary:
        print(f"{row['image']}: {row['predicted']} ({row['probability']:.3f})")
    print(f"wrote {len(summary)} image(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
