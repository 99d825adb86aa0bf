"""Layout rules for converting weights into jaxcls (Flax NNX) models, all in one place.

Our models are NHWC with Flax conventions; the sources are:

* **PyTorch** (timm, torchvision, efficientnet_pytorch): conv kernels ``(O, I, kh, kw)``, depthwise
  kernels ``(C, 1, kh, kw)``, linear weights ``(out, in)``, BatchNorm ``weight/bias/running_mean/
  running_var`` with eps 1e-5 and momentum ``m`` meaning ``running = (1-m)*running + m*batch``.
  Padding is symmetric, ``dilation * (k - 1) // 2`` on each side.
* **Keras / TensorFlow** (keras.applications, timm's ``tf_`` ports): kernels already ``(kh, kw, I,
  O)``, depthwise ``(kh, kw, C, multiplier)``, dense ``(in, out)``, BatchNorm ``gamma/beta/
  moving_mean/moving_variance`` with eps 1e-3 and momentum already the decay of the running average
  (Flax's meaning). Padding is TF ``'SAME'``: asymmetric (more on the bottom/right) for even
  padding totals, so a TF-origin model must keep ``'SAME'`` to reproduce its logits.

Channel order: keras.applications' 'caffe'-mode models (ResNet50/101/152, VGG) were trained on BGR
input; ``keras_conv_bgr_to_rgb`` folds that into the first conv so every converted model takes RGB.

Flax: conv kernels ``(kh, kw, I, O)``; our depthwise convs are stored as ``(kh, kw, 1, C)``
(``feature_group_count=C`` layout); Linear kernels ``(in, out)``; BatchNorm ``scale/bias/mean/var``
with ``momentum`` = decay (``1 - m_torch``).

References: ``torch.nn.Conv2d``/``BatchNorm2d`` docs; ``keras.layers.BatchNormalization``; timm's
``tf_`` model notes on 'SAME' padding and BN eps 1e-3; rwightman/efficientnet-jax porting rules.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxcls.weights.errors import WeightsError

# BatchNorm conventions of each origin.
TORCH_BN_EPS = 1e-5
TORCH_BN_MOMENTUM = 0.1  # PyTorch's default m; Flax momentum = 1 - m = 0.9.
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.99  # Already Flax's meaning.

# Our BatchNorm parameter/statistic names -> each origin's.
TORCH_BN_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
KERAS_BN_NAMES = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}
# Source tensors that are never weights and are always allowed to stay unused.
ALWAYS_IGNORED = ("*num_batches_tracked",)


def flax_bn_momentum(torch_momentum: float) -> float:
    """Flax/Keras momentum (decay of the running average) for a PyTorch BatchNorm momentum."""
    return 1.0 - torch_momentum


def torch_padding(kernel_size: int, dilation: int = 1) -> int:
    """PyTorch's symmetric 'same-size' padding for an odd kernel: pad this much on each side."""
    return dilation * (kernel_size - 1) // 2


def tf_same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one spatial dim: the extra pixel goes after."""
    effective = dilation * (kernel_size - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


# ------------------------------------------------------------------------------------ the rules
def _ndim(rule: str, w: np.ndarray, n: int) -> None:
    if w.ndim != n:
        raise WeightsError(f"rule {rule!r} expects a {n}-D tensor, got shape {w.shape}")


def torch_conv(w: np.ndarray) -> np.ndarray:
    """Conv kernel OIHW -> HWIO."""
    _ndim("torch_conv", w, 4)
    return np.transpose(w, (2, 3, 1, 0))


def torch_depthwise(w: np.ndarray) -> np.ndarray:
    """Depthwise kernel (C, 1, kh, kw) -> (kh, kw, 1, C)."""
    _ndim("torch_depthwise", w, 4)
    if w.shape[1] != 1:
        raise WeightsError(f"depthwise kernel must be (C, 1, kh, kw), got {w.shape}")
    return np.transpose(w, (2, 3, 1, 0))


def torch_linear(w: np.ndarray) -> np.ndarray:
    """Linear weight (out, in) -> (in, out)."""
    _ndim("torch_linear", w, 2)
    return np.transpose(w)


def torch_conv1x1_to_linear(w: np.ndarray) -> np.ndarray:
    """A 1x1 conv (O, I, 1, 1) used as a Linear (in, out), e.g. squeeze-excite on pooled maps."""
    _ndim("torch_conv1x1_to_linear", w, 4)
    if w.shape[2:] != (1, 1):
        raise WeightsError(f"expected a 1x1 conv kernel, got {w.shape}")
    return np.transpose(w[:, :, 0, 0])


def keras_conv(w: np.ndarray) -> np.ndarray:
    """Keras conv kernel: already (kh, kw, I, O)."""
    _ndim("keras_conv", w, 4)
    return w


def keras_conv_bgr_to_rgb(w: np.ndarray) -> np.ndarray:
    """The first conv of a Keras model trained on BGR input -> the same conv on RGB input.

    keras.applications' 'caffe'-mode models (ResNet50/101/152, VGG) expect ``preprocess_input``'s
    BGR channel order. Reversing the kernel's input-channel axis ``(kh, kw, I, O)`` makes
    ``conv(rgb)`` equal the original ``conv(bgr)`` exactly, so the converted model takes the RGB
    images every jaxcls pipeline produces; the registry contract's mean/std are listed in RGB.
    """
    _ndim("keras_conv_bgr_to_rgb", w, 4)
    if w.shape[2] != 3:
        raise WeightsError(f"a BGR input conv has 3 input channels, got kernel {w.shape}")
    return np.ascontiguousarray(w[:, :, ::-1, :])


def keras_depthwise(w: np.ndarray) -> np.ndarray:
    """Keras depthwise kernel (kh, kw, C, M) -> (kh, kw, 1, C*M), output channel c*M + m."""
    _ndim("keras_depthwise", w, 4)
    kh, kw, c, m = w.shape
    return w.reshape(kh, kw, 1, c * m)


def keras_dense(w: np.ndarray) -> np.ndarray:
    """Keras dense kernel: already (in, out)."""
    _ndim("keras_dense", w, 2)
    return w


def keras_conv1x1_to_linear(w: np.ndarray) -> np.ndarray:
    """A Keras 1x1 conv (1, 1, I, O) used as a Linear (I, O)."""
    _ndim("keras_conv1x1_to_linear", w, 4)
    if w.shape[:2] != (1, 1):
        raise WeightsError(f"expected a 1x1 conv kernel, got {w.shape}")
    return w[0, 0]


# VGG's classifier: torchvision/Keras flatten the final 7x7x512 map into a Linear/Dense, timm and we
# use the same parameters as a 7x7 'valid' conv (fc1) and a 1x1 conv (fc2) on that map.
FLAT_SPATIAL = 7


def _flat_in(rule: str, n_in: int) -> int:
    k2 = FLAT_SPATIAL * FLAT_SPATIAL
    if n_in % k2:
        raise WeightsError(f"rule {rule!r}: {n_in} inputs are not a flattened 7x7 map")
    return n_in // k2


def torch_flat_linear_to_conv(w: np.ndarray) -> np.ndarray:
    """Linear (out, C*7*7) on an NCHW-flattened map (torchvision VGG ``classifier.0``) -> HWIO
    (7, 7, C, out): input index ``c*49 + h*7 + w``."""
    _ndim("torch_flat_linear_to_conv", w, 2)
    c = _flat_in("torch_flat_linear_to_conv", w.shape[1])
    k = FLAT_SPATIAL
    return np.transpose(w.reshape(w.shape[0], c, k, k), (2, 3, 1, 0))


def keras_flat_dense_to_conv(w: np.ndarray) -> np.ndarray:
    """Dense (7*7*C, out) on an NHWC-flattened map (Keras VGG ``fc1``) -> HWIO (7, 7, C, out):
    input index ``h*7*C + w*C + c``, so a plain reshape."""
    _ndim("keras_flat_dense_to_conv", w, 2)
    c = _flat_in("keras_flat_dense_to_conv", w.shape[0])
    return w.reshape(FLAT_SPATIAL, FLAT_SPATIAL, c, w.shape[1])


def torch_linear_to_conv1x1(w: np.ndarray) -> np.ndarray:
    """Linear (out, in) used as a 1x1 conv (1, 1, in, out) (torchvision VGG ``classifier.3``)."""
    _ndim("torch_linear_to_conv1x1", w, 2)
    return np.transpose(w)[None, None]


def keras_dense_to_conv1x1(w: np.ndarray) -> np.ndarray:
    """Dense (in, out) used as a 1x1 conv (1, 1, in, out) (Keras VGG ``fc2``)."""
    _ndim("keras_dense_to_conv1x1", w, 2)
    return w[None, None]


def identity(w: np.ndarray) -> np.ndarray:
    """Biases, BatchNorm scale/bias/mean/var: the same in every framework."""
    return w


RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": identity,
    "torch_conv": torch_conv,
    "torch_depthwise": torch_depthwise,
    "torch_linear": torch_linear,
    "torch_conv1x1_to_linear": torch_conv1x1_to_linear,
    "keras_conv": keras_conv,
    "keras_conv_bgr_to_rgb": keras_conv_bgr_to_rgb,
    "keras_depthwise": keras_depthwise,
    "keras_dense": keras_dense,
    "keras_conv1x1_to_linear": keras_conv1x1_to_linear,
    "torch_flat_linear_to_conv": torch_flat_linear_to_conv,
    "keras_flat_dense_to_conv": keras_flat_dense_to_conv,
    "torch_linear_to_conv1x1": torch_linear_to_conv1x1,
    "keras_dense_to_conv1x1": keras_dense_to_conv1x1,
}


def apply_rule(rule: str, w: np.ndarray) -> np.ndarray:
    """Applies the named layout rule (one of ``RULES``)."""
    try:
        fn = RULES[rule]
    except KeyError:
        raise WeightsError(f"unknown layout rule {rule!r}; known: {sorted(RULES)}") from None
    return fn(w)


# ------------------------------------------------------------------------- Keras 3 variable names
def keras3_var_names(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Names the index-only tensors of a Keras 3 ``.weights.h5`` (``layer/0``, ``layer/1`` ...).

    Keras 3 stores each layer's variables in creation order without names. The layer kinds in the
    Keras application zoo are recognised from their variables:

    * 4 vectors of one length: BatchNormalization ``gamma, beta, moving_mean, moving_variance``;
    * a kernel of rank >= 2 (and an optional vector): Conv/DepthwiseConv/Dense ``kernel[, bias]``;
    * two arrays of one shape and a scalar: Normalization ``mean, variance, count``.

    Any other pattern raises WeightsError naming the layer, rather than guessing.
    """
    layers: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, w in weights.items():
        layer, _, idx = name.rpartition("/")
        if not idx.isdigit():
            raise WeightsError(f"{name} is not a Keras 3 '<layer>/<index>' name")
        layers.setdefault(layer, []).append((int(idx), w))
    out = {}
    for layer, items in layers.items():
        ws = [w for _, w in sorted(items, key=lambda t: t[0])]
        shapes = [w.shape for w in ws]
        if len(ws) == 4 and all(len(s) == 1 and s == shapes[0] for s in shapes):
            names: Sequence[str] = ("gamma", "beta", "moving_mean", "moving_variance")
        elif ws[0].ndim >= 2 and (len(ws) == 1 or (len(ws) == 2 and ws[1].ndim == 1)):
            names = ("kernel", "bias")[: len(ws)]
        elif len(ws) == 3 and shapes[0] == shapes[1] and ws[2].ndim == 0:
            names = ("mean", "variance", "count")
        else:
            raise WeightsError(f"Keras 3 layer {layer} has unrecognised variables {shapes}")
        out.update({f"{layer}/{n}": w for n, w in zip(names, ws)})
    return out


def keras_names(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras tensors under one naming, whichever Keras wrote the file: ``<layer>/<variable>``.

    * Keras 3 ``.weights.h5`` files hold index-only names (``stem_bn/0``): they are named by
      :func:`keras3_var_names`.
    * TF-era files (the keras.applications downloads) call a DepthwiseConv2D's kernel
      ``depthwise_kernel``; Keras 3 calls it ``kernel`` (in ``.weights.h5`` and in the legacy
      ``.h5`` files it writes). It is renamed to ``kernel`` here, the one place this is handled,
      so name maps (:func:`jaxcls.weights.maps.keras_leaf`) know a single name.
    Layers that an older Keras named differently are renamed per model family
    (:func:`jaxcls.weights.maps.keras_layer_renamer`).

    Raises:
      WeightsError: a layer holds both a ``kernel`` and a ``depthwise_kernel``, or Keras 3 names
        of an unrecognised layer kind.
    """
    if weights and all(name.rpartition("/")[2].isdigit() for name in weights):
        weights = keras3_var_names(weights)
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        layer, _, var = name.rpartition("/")
        if var == "depthwise_kernel":
            if f"{layer}/kernel" in weights:
                raise WeightsError(f"Keras layer {layer} has both a kernel and a depthwise_kernel")
            var = "kernel"
        out[f"{layer}/{var}"] = w
    return out


# ---------------------------------------------------------------------------- strict assignment
Path = tuple[Any, ...] | str


def path_str(path: Path) -> str:
    """``('blocks', 0, 'conv', 'kernel')`` -> ``'blocks.0.conv.kernel'``."""
    return path if isinstance(path, str) else ".".join(str(p) for p in path)


def _shape_dtype(target: Any) -> tuple[tuple[int, ...], Any]:
    if hasattr(target, "shape"):
        return tuple(target.shape), getattr(target, "dtype", None)
    return tuple(target), None


def _listing(title: str, names: Iterable[str], limit: int = 200) -> str:
    names = sorted(names)
    shown = "\n    ".join(names[:limit])
    more = f"\n    ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"  {title} ({len(names)}):\n    {shown}{more}"


def strict_assign(
    target_flat: Mapping[Path, Any],
    source: Mapping[str, np.ndarray],
    name_map: Mapping[Path, tuple[str, str]],
    *,
    ignore: Iterable[str] = (),
) -> dict[Path, np.ndarray]:
    """Fills every target parameter from exactly the source tensors, or fails listing why.

    Args:
      target_flat: every parameter/statistic of the model, path -> shape (or anything with
        ``.shape`` and optionally ``.dtype``, e.g. ``jax.ShapeDtypeStruct``).
      source: the file's tensors, name -> array (``read_weights``).
      name_map: target path -> ``(source name, layout rule)``.
      ignore: glob patterns of source names that are deliberately unused (beyond
        ``ALWAYS_IGNORED``), e.g. Keras' in-model normalization statistics.

    Returns:
      target path -> converted array, cast to the target's dtype when it has one.

    Raises:
      WeightsError: listing target paths without a source tensor, source tensors left unused, map
        entries for paths the model lacks, and shape mismatches after the layout rule, together.
    """
    patterns = tuple(ignore) + ALWAYS_IGNORED
    keys = {path_str(p): p for p in target_flat}
    map_by_str = {path_str(p): v for p, v in name_map.items()}
    missing = [k for k in keys if k not in map_by_str or map_by_str[k][0] not in source]
    used = {src for src, _ in map_by_str.values()}
    unused = [
        n for n in source if n not in used and not any(fnmatch.fnmatch(n, p) for p in patterns)
    ]
    extra = [k for k in map_by_str if k not in keys]
    skip = set(missing)
    mapped = {k: p for k, p in keys.items() if k not in skip}
    out, mismatched = _convert_mapped(target_flat, source, mapped, map_by_str)
    _check_one_to_one(missing, unused, extra, mismatched)
    return out


def _convert_mapped(
    target_flat: Mapping[Path, Any],
    source: Mapping[str, np.ndarray],
    mapped: Mapping[str, Path],
    map_by_str: Mapping[str, tuple[str, str]],
) -> tuple[dict[Path, np.ndarray], list[str]]:
    """Applies the layout rule of every ``mapped`` target (its path string -> path); returns the
    converted arrays (in the target's dtype when it has one) and the shape mismatches."""
    out: dict[Path, np.ndarray] = {}
    mismatched = []
    for k, p in mapped.items():
        src, rule = map_by_str[k]
        try:
            w = apply_rule(rule, np.asarray(source[src]))
        except WeightsError as e:
            mismatched.append(f"{k} <- {src}: {e}")
            continue
        shape, dtype = _shape_dtype(target_flat[p])
        if tuple(w.shape) != shape:
            mismatched.append(f"{k} {shape} <- {src} {tuple(source[src].shape)} via {rule}")
            continue
        out[p] = np.asarray(w, dtype=dtype) if dtype is not None else np.ascontiguousarray(w)
    return out, mismatched


def _check_one_to_one(
    missing: list[str], unused: list[str], extra: list[str], mismatched: list[str]
) -> None:
    """Raises one `WeightsError` listing every problem `strict_assign` found, if any."""
    problems = []
    if missing:
        problems.append(_listing("model parameters with no source tensor", missing))
    if unused:
        problems.append(_listing("source tensors left unused", unused))
    if extra:
        problems.append(_listing("name-map entries for parameters the model lacks", extra))
    if mismatched:
        problems.append(_listing("shape mismatches", mismatched))
    if problems:
        raise WeightsError("weight conversion is not one-to-one:\n" + "\n".join(problems))
