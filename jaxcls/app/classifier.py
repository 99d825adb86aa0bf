"""What the web app does with an upload, without any UI: the model loaded and compiled once,
bytes -> checked, decoded, preprocessed, classified and explained.

Decoding and preprocessing are the checkpoint's own: `input_pipeline.decode.decode_image` (the
decoder training and predict use, with its EXIF, alpha, 16-bit and decompression-bomb handling)
and the eval pipeline saved with the checkpoint (`Loaded.preprocess_fn`), so an upload gives the
same pixels as the same file in training, evaluation and ``tools/predict.py``. Every bad upload
(empty, too many bytes, not an image, truncated, too many pixels) becomes a `BadUpload` carrying
the message shown on the page; nothing else is caught.

The model runs at batch 1 (one compiled shape, compiled when the app starts), under a lock, so
concurrent sessions of one server share the compiled functions safely.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import numpy as np

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # a 8000 x 5000 photo; decode's own limit is larger
SALIENCY_METHODS = ("gradcam", "gradcampp", "gradients", "smoothgrad", "integrated_gradients")


class BadUpload(ValueError):
    """An upload the app refuses; ``str(e)`` is the message for the page."""


@dataclasses.dataclass
class Result:
    """One classified upload."""

    name: str
    original: np.ndarray  # uint8 [H, W, 3] as decoded
    top_k: list[dict]  # {'class', 'index', 'probability'}, most probable first
    probabilities: np.ndarray  # float32 [K]
    decode_ms: float  # decode + preprocess
    predict_ms: float  # the forward pass


def find_results(step_dir: str) -> dict | None:
    """The ``results.json`` of the training workdir a checkpoint step belongs to, if any
    (``<workdir>/checkpoints/<store>/<step>``)."""
    path = step_dir
    for _ in range(4):
        path = os.path.dirname(path)
        candidate = os.path.join(path, "results.json")
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    return None


class Classifier:
    """A checkpoint ready to serve: ``classify(name, data)`` and ``explain(result, ...)``."""

    def __init__(
        self,
        checkpoint: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        import jax
        from flax import nnx

        from jaxcls.explain import inference, saliency
        from jaxcls.explain.predict import class_names_for

        self.loaded = inference.load_for_inference(checkpoint)
        self.class_names = class_names_for(self.loaded.class_names)
        self.pipeline = self.loaded.eval_pipeline
        self.preprocess = self.loaded.preprocess_fn()
        self.max_bytes, self.max_pixels = int(max_bytes), int(max_pixels)
        self.results = find_results(self.loaded.step_dir)
        self.lock = threading.Lock()
        graphdef = self.loaded.graphdef

        @jax.jit
        def probabilities(params, rest, x):
            logits, _ = nnx.merge(graphdef, params, rest, copy=True)(x, train=False)
            return jax.nn.softmax(logits.astype(np.float32), axis=-1)

        self._probabilities = probabilities
        self.explainer = saliency.Explainer.from_model(self.loaded.model)
        h, w = self.loaded.image_size
        t = time.perf_counter()
        self._forward(np.zeros((1, h, w, 3), np.float32))  # compile now, not on the first upload
        self.compile_seconds = time.perf_counter() - t

    @property
    def model_name(self) -> str:
        return str(self.loaded.meta["model"])

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            return np.asarray(self._probabilities(self.loaded.params, self.loaded.rest, x))

    def decode(self, name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """``(original uint8 [H, W, 3], model input float32 [H, W, 3])``, or BadUpload."""
        from input_pipeline import decode

        if len(data) > self.max_bytes:
            raise BadUpload(
                f"{name}: file too large: {len(data)} bytes > limit {self.max_bytes} bytes"
            )
        try:
            original = decode.decode_image(data, max_pixels=self.max_pixels, path=name)
            return original, self.preprocess(original)
        except decode.DecodeError as e:
            raise BadUpload(f"{name}: {e.reason}") from None

    def classify(self, name: str, data: bytes, top_k: int = 5) -> Result:
        """Decodes, preprocesses and classifies one upload. Raises BadUpload."""
        t0 = time.perf_counter()
        original, x = self.decode(name, data)
        t1 = time.perf_counter()
        p = self._forward(x[None])[0]
        t2 = time.perf_counter()
        order = np.argsort(-p)[: min(top_k, len(p))]
        top = [
            {"class": self.class_names[i], "index": int(i), "probability": float(p[i])}
            for i in order
        ]
        return Result(name, original, top, p, (t1 - t0) * 1e3, (t2 - t1) * 1e3)

    def explain(
        self, result: Result, method: str = "gradcam", target: int | None = None
    ) -> tuple[np.ndarray, float]:
        """``(overlay uint8 [H, W, 3] on the original image, milliseconds)``: the saliency map
        of ``target`` (default: the predicted class) mapped back through the pipeline's
        resize/crop and blended over the upload."""
        from jaxcls.explain import overlay

        t = time.perf_counter()
        x = self.preprocess(result.original)[None]
        cls = result.top_k[0]["index"] if target is None else int(target)
        with self.lock:
            out = self.explainer(x, method, target=cls)
        geometry = overlay.Geometry.from_pipeline(self.pipeline, result.original.shape[:2])
        heat = overlay.to_original(out["maps"][0], geometry)
        return overlay.blend(result.original, heat), (time.perf_counter() - t) * 1e3
