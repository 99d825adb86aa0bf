"""What both parity-fixture generators share: inputs, weight policy, synthetic weights, writers.

tools/make_weight_fixtures.py (timm, torchvision) and tools/make_keras_fixtures.py
(keras.applications) build shrunk reference models with random weights and store their logits on
a fixed input (tests/weights/test_parity.py). One policy for all of them, here:

* **Inputs**: :func:`float_input` (float16-exact N(0, 1), NHWC) for the torch cases;
  :func:`images` (uint8 RGB, what a user hands to Keras) for the Keras cases, which carry a
  pretrained ``tag`` whose preprocessing contract turns the images into the model's input.
* **Weights**: kernels keep their framework's initialisation; BatchNorm scale U(0.5, 1.5), shift and
  every bias N(0, 0.1) (:func:`affine`), so a mix-up of any two shows.
* **BatchNorm statistics** (:func:`perturb_statistics`): calibrated on the fixture's own input
  (one training-mode pass with the statistics replaced by the batch's), then perturbed (mean
  +- 0.1 std, variance x 0.7..1.3). Arbitrary statistics make a thin random network's activations
  die out layer by layer, so its logits hardly depend on the input and a wrong stem or padding
  goes unnoticed; calibrated ones keep unit-scale activations in every layer, and the perturbation
  keeps a mean/variance mix-up visible.
* Every stored value is float16-exact (:func:`fp16_exact`): weight files hold float16 at half the
  size, without loss; the references run in float32.
* **Synthetic cases** (models that cannot be shrunk: Inception-v3): every tensor is a
  deterministic function of its name and shape (:func:`synthetic_weights`, pure numpy, identical
  in the tests), except the calibrated BatchNorm statistics, which the ``.npz`` stores
  (``statistics``, in manifest order).

Pure numpy: the tests import :func:`synthetic_weights` from here.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import math
import os
import zlib

import numpy as np

BATCH = 2
NUM_CLASSES = 10
FULL_LAYOUTS = "full_layouts.json.gz"
VAR_FLOOR = 0.1  # Calibrated variances are at least this fraction of their layer's median.
# BatchNorm running statistics, by leaf name (PyTorch, Keras).
STATISTICS = ("running_mean", "running_var", "moving_mean", "moving_variance")


# -------------------------------------------------------------------------------- values
def fp16_exact(a) -> np.ndarray:
    """``a`` rounded to float16-exact float32 values."""
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def float_input(shape, seed: int = 2) -> np.ndarray:
    """Float16-exact N(0, 1) input, NHWC."""
    return fp16_exact(np.random.default_rng(seed).standard_normal(shape))


def images(shape, seed: int = 2) -> np.ndarray:
    """Random uint8 RGB images, NHWC."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def affine(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (scale, shift): U(0.5, 1.5), N(0, 0.1). Biases use :func:`bias`."""
    return fp16_exact(rng.uniform(0.5, 1.5, n)), bias(n, rng)


def bias(shape, rng: np.random.Generator) -> np.ndarray:
    """A conv/dense bias: N(0, 0.1) (frameworks initialise them to zero, hiding a mix-up)."""
    return fp16_exact(rng.normal(0.0, 0.1, shape))


def perturb_statistics(mean, var, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated running statistics (the batch's) -> the stored ones: variance floored at
    ``VAR_FLOOR`` x the layer's median, mean +- 0.1 std, variance x 0.7..1.3, float16-exact."""
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    n = mean.shape[0]
    # A channel nearly constant over the small batch (2 images; 1x1 maps deep in Inception-v3)
    # would divide by ~sqrt(eps) and blow up whatever differs in eval mode, layer after layer.
    var = np.maximum(var, VAR_FLOOR * np.median(var))
    mean = mean + rng.standard_normal(n) * 0.1 * np.sqrt(var)
    return fp16_exact(mean), fp16_exact(var * rng.uniform(0.7, 1.3, n))


# ------------------------------------------------------------------ synthetic weights (pure numpy)
def _uniform(name: str, n: int) -> np.ndarray:
    """``n`` float64 values in [0, 1) from PCG64's raw output, seeded with CRC-32(name)."""
    raw = np.random.PCG64(zlib.crc32(name.encode())).random_raw(n)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def synthetic_tensor(name: str, shape, layout: str) -> np.ndarray:
    """A float16-exact float32 tensor that depends only on ``name``, ``shape`` and ``layout``.

    The values come from the raw 64-bit output of numpy's PCG64 seeded with the CRC-32 of the name
    (both fixed by their specifications, so every numpy version gives the same tensor). Kernels
    (>= 2-D) are He-uniform for their fan-in (``layout`` 'torch': (out, in, ...); 'keras':
    (..., in, out)); BatchNorm scales and variances lie in [0.5, 1.5); biases and means in
    [-0.2, 0.2).
    """
    shape = tuple(int(d) for d in shape)
    u = _uniform(name, math.prod(shape))
    leaf = name.rsplit("/" if layout == "keras" else ".", 1)[-1]
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:]) if layout == "torch" else math.prod(shape[:-1])
        hi = math.sqrt(6.0 / fan_in)
        lo = -hi
    elif leaf in ("weight", "running_var", "gamma", "moving_variance"):
        lo, hi = 0.5, 1.5
    else:
        lo, hi = -0.2, 0.2
    return fp16_exact(lo + (hi - lo) * u).reshape(shape)


def is_statistic(name: str) -> bool:
    """Whether ``name`` is a BatchNorm running statistic (PyTorch ``.`` or Keras ``/`` names)."""
    return name.replace("/", ".").rsplit(".", 1)[-1] in STATISTICS


def synthetic_weights(
    manifest: dict, layout: str, statistics: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``{name: synthetic_tensor(name, shape, layout)}`` for a ``{name: shape}`` manifest, with the
    BatchNorm running statistics taken from ``statistics`` (their values concatenated in manifest
    order, see :func:`pack_statistics`) when given."""
    weights = {name: synthetic_tensor(name, shape, layout) for name, shape in manifest.items()}
    if statistics is not None:
        flat = np.asarray(statistics, np.float32)
        offset = 0
        for name in filter(is_statistic, manifest):
            n = weights[name].size
            weights[name] = flat[offset : offset + n].reshape(weights[name].shape)
            offset += n
        assert offset == flat.size, (offset, flat.size)
    return weights


def pack_statistics(weights: dict[str, np.ndarray]) -> np.ndarray:
    """The running statistics of ``weights`` (in its order), concatenated, as float16."""
    stats = [np.ravel(w) for name, w in weights.items() if is_statistic(name)]
    flat = np.concatenate(stats)
    assert np.array_equal(fp16_exact(flat), flat), "statistics must be float16-exact"
    return flat.astype(np.float16)


# ------------------------------------------------------------------------------------ writers
def save_case(out: str, name: str, x, logits, manifest=None, statistics=None) -> None:
    """``<name>.npz``: ``input`` (uint8 images, or float16-exact values stored as float16),
    ``logits`` (float32), and for synthetic cases ``manifest`` (JSON) and ``statistics``."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        assert np.array_equal(fp16_exact(x), x), "inputs must be float16-exact"
        x = x.astype(np.float16)
    extra = {}
    if manifest is not None:
        extra = {"manifest": np.array(json.dumps(manifest)), "statistics": statistics}
    np.savez_compressed(
        os.path.join(out, f"{name}.npz"),
        input=x,
        logits=np.asarray(logits, np.float32),
        **extra,
    )


def case_entry(model: str, kwargs: dict, source: str, **extra) -> dict:
    """A cases.json entry: our model, its constructor overrides, the source framework, and
    ``file``/``keras3_file``/``tag``/``weights``/``layout``/``ignored`` where the case has them."""
    entry = {"model": model, "kwargs": kwargs, "source": source, "num_classes": NUM_CLASSES}
    return {**entry, **{k: v for k, v in extra.items() if v}}


def update_index(out: str, entries: dict[str, dict]) -> None:
    """Merges ``entries`` into ``<out>/cases.json`` (other cases are kept)."""
    path = os.path.join(out, "cases.json")
    index = json.load(open(path)) if os.path.exists(path) else {}
    index.update(entries)
    with open(path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")


def update_full_layouts(out: str, source: str, layouts: dict[str, dict[str, list[int]]]) -> None:
    """Replaces ``source``'s entry of ``<out>/full_layouts.json.gz``: ``{source: {reference model:
    {tensor name (as our reader gives it): shape}}}`` of full-size reference models, for the test
    that every map covers the real layouts at full depth."""
    path = os.path.join(out, FULL_LAYOUTS)
    table = json.load(gzip.open(path, "rt")) if os.path.exists(path) else {}
    table[source] = layouts
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(table, sort_keys=True, separators=(",", ":")).encode())
    print(f"{FULL_LAYOUTS}: {source}: {len(layouts)} reference models")


def selected(name: str, only: list[str]) -> bool:
    """Whether case ``name`` matches one of the ``--only`` globs (all when there are none)."""
    return not only or any(fnmatch.fnmatch(name, p) for p in only)
