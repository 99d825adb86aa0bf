"""Saliency maps of image files, overlaid on the originals (the library half of
``tools/saliency.py``).

`explain_files` decodes and preprocesses each image exactly as in evaluation (the checkpoint's eval
pipeline), computes the maps on the model input (`saliency.Explainer`) and maps them back onto the
original photo (`overlay`: resize and padding undone). For each image and method it writes
``OUT/<name>_<method>.png`` (the overlay) and, with ``save_npy``, ``OUT/<name>_<method>.npy`` (the
raw map) and ``OUT/<name>_<method>_original.npy`` (the [0, 1] map at the original image size);
``OUT/saliency.json`` lists the predicted and explained class of every image.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from input_pipeline import decode
from jaxcls.explain import inference, overlay, saliency


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


def _write_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every batch of one `explain_files` call shares."""

    loaded: inference.Loaded
    explainer: saliency.Explainer
    out_dir: str
    methods: tuple[str, ...]
    target: int | None
    layer: str | None
    save_npy: bool
    alpha: float
    method_options: dict


def _explain_batch(job: _Job, x, paths, originals, stems) -> list[dict]:
    """Explains one (padded) batch ``x`` of ``paths`` with every method: writes the overlays (and
    raw maps) and returns one summary row per image."""
    names = job.loaded.class_names
    rows = [{"image": p, "predicted": None, "probability": None, "explained": {}} for p in paths]
    for method in job.methods:
        method = saliency.canonical_method(method)
        out = job.explainer(x, method, target=job.target, layer=job.layer, **job.method_options)
        for i, original in enumerate(originals):
            pipeline = job.loaded.eval_pipeline
            geometry = overlay.Geometry.from_pipeline(pipeline, original.shape[:2])
            heat = overlay.to_original(out["maps"][i], geometry)
            blended = overlay.blend(original, heat, alpha=job.alpha)
            base = os.path.join(job.out_dir, f"{stems[i]}_{method}")
            _write_png(base + ".png", blended)
            if job.save_npy:
                np.save(base + ".npy", out["raw"][i])
                np.save(base + "_original.npy", heat)
            pred = int(out["probs"][i].argmax())
            rows[i]["predicted"] = names[pred]
            rows[i]["probability"] = float(out["probs"][i, pred])
            rows[i]["explained"][method] = names[int(out["classes"][i])]
    return rows


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
    explainer = saliency.Explainer(
        loaded.graphdef,
        loaded.params,
        loaded.rest,
        default_layer=getattr(loaded.model, "default_cam_layer", None),
    )
    preprocess = loaded.preprocess_fn()
    cls = resolve_target(target, loaded.class_names)
    job = _Job(
        loaded, explainer, out_dir, tuple(methods), cls, layer, save_npy, alpha, method_options
    )
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
        summary += _explain_batch(job, x, paths, originals, stems[start : start + n])
    record = {"checkpoint": loaded.step_dir, "layer": layer or explainer.default_layer}
    with open(os.path.join(out_dir, "saliency.json"), "w") as f:
        json.dump({**record, "images": summary}, f, indent=2)
    return summary


def explain_and_print(checkpoint: str, images: list[str], out_dir: str, **options) -> int:
    """`explain_files`, then one line per image (predicted class and probability) and the count
    written. Returns the exit code (0). Raises ValueError, OSError or
    ``checkpoint.CheckpointError`` for unusable inputs."""
    summary = explain_files(checkpoint, images, out_dir, **options)
    for row in summary:
        print(f"{row['image']}: {row['predicted']} ({row['probability']:.3f})")
    print(f"wrote {len(summary)} image(s) to {out_dir}")
    return 0
