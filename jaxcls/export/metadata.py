"""The JSON written beside an exported model: what a consumer needs to feed it.

The artefact takes float32 ``[B, H, W, 3]`` RGB images already preprocessed by the checkpoint's
eval pipeline and returns logits ``[B, K]``; the JSON records that pipeline both as the jaxcls
string (``preprocessing.pipeline``) and spelled out (``resize``, ``crop``, ``normalize`` or
``value_range``), so code without jaxcls can reproduce it (docs/deploy.md shows how).
"""

from __future__ import annotations

import os

_GEOMETRY = {"resize": "resize", "resize_small": "resize", "center_crop": "crop"}
_ALIASES = {"central_crop": "center_crop"}


def describe_pipeline(pipeline: str) -> dict:
    """The eval pipeline string spelled out: ``ops`` (name, args, kwargs) and, where present,
    ``resize`` {'op', 'size', 'method'}, ``crop`` {'size'}, ``normalize`` {'mean', 'std'} (on
    the 0..1 scale) or ``value_range`` {'min', 'max', 'in_min', 'in_max'} (on 0..255 input)."""
    from input_pipeline import pp
    from input_pipeline.pp.ops_image import IMAGENET_MEAN, IMAGENET_STD
    from input_pipeline.pp.registry import parse_call

    pp.parse(pipeline)  # a malformed string fails here with the parser's message
    out: dict = {"pipeline": pipeline, "ops": []}
    for text in (t for t in pipeline.split("|") if t.strip()):
        name, args, kwargs = parse_call(text)
        name = _ALIASES.get(name, name)
        out["ops"].append({"op": name, "args": args, "kwargs": kwargs})
        params = {**dict(zip(("size", "method", "antialias"), args)), **kwargs}
        if name in ("resize", "resize_small"):
            out["resize"] = {
                "op": name,
                "size": params["size"],
                "method": params.get("method", "bilinear"),
                "shorter_side": name == "resize_small",
            }
        elif name == "center_crop":
            out["crop"] = {"size": params["size"]}
        elif name == "normalize":
            p = {**dict(zip(("mean", "std"), args)), **kwargs}
            mean, std = p.get("mean", IMAGENET_MEAN), p.get("std", IMAGENET_STD)
            if mean == "imagenet":
                mean, std = IMAGENET_MEAN, IMAGENET_STD
            out["normalize"] = {"mean": list(mean), "std": list(std), "scale": "0..1"}
        elif name == "value_range":
            p = {**dict(zip(("vmin", "vmax", "in_min", "in_max"), args)), **kwargs}
            out["value_range"] = {
                "min": float(p.get("vmin", -1.0)),
                "max": float(p.get("vmax", 1.0)),
                "in_min": float(p.get("in_min", 0.0)),
                "in_max": float(p.get("in_max", 255.0)),
            }
    return out


def metadata_path(out: str) -> str:
    """Where the JSON goes: beside the artefact, its name plus ``.json`` (``model.onnx`` ->
    ``model.onnx.json``, folder ``sm`` -> ``sm.json``), so several formats of one model can share
    a folder."""
    return out.rstrip("/\\") + ".json"


def build(loaded, fmt: str, out: str, quantize: str, impls: dict, class_names: list[str]) -> dict:
    """The metadata of one export (sizes and checks are added by the exporter)."""
    h, w = loaded.image_size
    meta = loaded.meta
    return {
        "format": fmt,
        "artefact": os.path.basename(out.rstrip("/\\")),
        "quantize": quantize or "none",
        "model": meta["model"],
        "model_kwargs": dict(meta.get("model_kwargs") or {}),
        "checkpoint": loaded.step_dir,
        "pretrained": (meta.get("pretrained") or {}).get("tag") or None,
        "num_classes": len(class_names),
        "class_names": class_names,
        "input": {
            "name": "images",
            "layout": "NHWC",
            "dtype": "float32",
            "shape": ["batch", h, w, 3],
            "channels": "RGB",
        },
        "output": {"name": "logits", "shape": ["batch", len(class_names)], "softmax": False},
        "preprocessing": describe_pipeline(loaded.eval_pipeline),
        "implementations": impls,
    }
