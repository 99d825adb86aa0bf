"""More preprocessing ops: letterbox resize, geometric and photometric augmentation, CLAHE and
RandAugment. They register into the same `registry` as `ops_image`; :mod:`input_pipeline.pp`
imports both.

Conventions shared by these ops:

* Colour ops (brightness, contrast, saturation, hue, clahe, randaugment) work on the 0..255 scale,
  so place them *before* ``value_range``/``normalize``; uint8 input gives uint8 output (clipped),
  float input gives float32 output (not clipped).
* A random magnitude argument is either one number ``f`` (drawn uniformly from ``[-f, f]``, or
  ``[1 - f, 1 + f]`` for multiplicative factors) or a ``(low, high)`` pair drawn from exactly.
  Keras' preprocessing layers (RandomRotation, RandomZoom, RandomTranslation, RandomBrightness,
  RandomContrast) use the same convention, which makes recipes from Keras notebooks easy to port.
* Geometric ops keep the image size; uncovered pixels are filled by ``fill_mode``: 'reflect'
  (Keras' default), 'edge' or 'constant' (with ``fill``, a grey level or an RGB triple).

References: RandAugment, Cubuk et al. 2020 (arXiv:1909.13719), op list and magnitude scale as in
torchvision's ``RandAugment`` (magnitude bins 0..30); CLAHE, Zuiderveld 1994, as OpenCV's
``createCLAHE`` on the L channel of CIELAB so colours do not shift.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from input_pipeline.pp import registry
from input_pipeline.pp.ops_image import resize_to, size_hw

_BORDER = {"reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE}


def _range(value, centre: float = 0.0) -> tuple[float, float]:
    """``f`` -> ``(centre - f, centre + f)``; ``(a, b)`` -> ``(a, b)``."""
    if isinstance(value, int | float):
        return centre - float(value), centre + float(value)
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"range low {low} > high {high}")
    return low, high


def _fill(fill) -> tuple[float, float, float]:
    if isinstance(fill, int | float):
        return (float(fill),) * 3
    return tuple(float(c) for c in fill)


def _check_fill_mode(fill_mode: str) -> None:
    if fill_mode not in ("reflect", "edge", "constant"):
        raise ValueError(f"fill_mode must be reflect, edge or constant, got {fill_mode!r}")


def _warp(image, matrix, fill_mode, fill):
    """Applies a 2x3 affine matrix (output -> input mapping inverted by OpenCV) keeping the size."""
    h, w = image.shape[:2]
    border = _BORDER.get(fill_mode, cv2.BORDER_CONSTANT)
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=fill
    )
    return out[..., None] if out.ndim == 2 else out


def _like(result: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Returns ``result`` in ``image``'s dtype: uint8 is rounded and clipped, floats are float32."""
    if image.dtype == np.uint8:
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return result.astype(np.float32)


def _needs_uint8(name: str, image: np.ndarray) -> None:
    if image.dtype != np.uint8:
        raise ValueError(f"{name} needs a uint8 image: place it before value_range/normalize")


@registry.register("resize_pad", aliases=("letterbox",))
def resize_pad(size, fill=(0, 0, 0), method="bilinear"):
    """Resizes to fit inside ``size`` keeping the aspect ratio, then pads (centred) with ``fill``.

    Unlike ``resize`` nothing is distorted, unlike a center crop nothing is cut off.
    """
    h, w = size_hw(size)
    fill = _fill(fill)

    def fn(image, rng):
        ih, iw = image.shape[:2]
        scale = min(h / ih, w / iw)
        nh, nw = max(1, min(h, round(ih * scale))), max(1, min(w, round(iw * scale)))
        resized = resize_to(image, (nh, nw), method)
        out = np.empty((h, w, image.shape[2]), image.dtype)
        out[:] = np.asarray(fill[: image.shape[2]], np.float32).astype(image.dtype)
        top, left = (h - nh) // 2, (w - nw) // 2
        out[top : top + nh, left : left + nw] = resized
        return out

    return fn


@registry.register("rotate", random=True)
def rotate(degrees=15.0, fill_mode="reflect", fill=0):
    """Rotates by an angle drawn from ``degrees`` (counter-clockwise positive) about the centre."""
    low, high = _range(degrees)
    _check_fill_mode(fill_mode)
    fill = _fill(fill)

    def fn(image, rng):
        h, w = image.shape[:2]
        angle = rng.uniform(low, high)
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        return _warp(image, matrix, fill_mode, fill)

    return fn


@registry.register("zoom", random=True)
def zoom(factor=0.1, fill_mode="reflect", fill=0):
    """Zooms about the centre by a scale drawn from ``[1 - f, 1 + f]`` (> 1 zooms in)."""
    low, high = _range(factor, centre=1.0)
    if low <= 0:
        raise ValueError(f"zoom scale must stay positive, got range ({low}, {high})")
    _check_fill_mode(fill_mode)
    fill = _fill(fill)

    def fn(image, rng):
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, rng.uniform(low, high))
        return _warp(image, matrix, fill_mode, fill)

    return fn


@registry.register("shift", random=True, aliases=("translate",))
def shift(fraction=0.1, fill_mode="reflect", fill=0):
    """Translates by up to ``fraction`` of the height and width (drawn independently)."""
    low, high = _range(fraction)
    _check_fill_mode(fill_mode)
    fill = _fill(fill)

    def fn(image, rng):
        h, w = image.shape[:2]
        dy, dx = rng.uniform(low, high) * h, rng.uniform(low, high) * w
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        return _warp(image, matrix, fill_mode, fill)

    return fn


@registry.register("brightness", random=True)
def brightness(delta=0.2):
    """Adds ``delta * 255`` with delta drawn from the range (0..255 scale)."""
    low, high = _range(delta)
    return lambda image, rng: _like(image.astype(np.float32) + rng.uniform(low, high) * 255, image)


@registry.register("contrast", random=True)
def contrast(factor=0.2):
    """Scales deviations from the per-channel mean by a factor drawn from ``[1 - f, 1 + f]``."""
    low, high = _range(factor, centre=1.0)

    def fn(image, rng):
        x = image.astype(np.float32)
        mean = x.mean(axis=(0, 1), keepdims=True)
        return _like((x - mean) * rng.uniform(low, high) + mean, image)

    return fn


def _gray(x: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, the weights PIL and tf.image use for grayscale."""
    return (x @ np.float32([0.299, 0.587, 0.114]))[..., None]


@registry.register("saturation", random=True)
def saturation(factor=0.2):
    """Blends with the grayscale image: factor 0 is gray, 1 unchanged, > 1 more saturated."""
    low, high = _range(factor, centre=1.0)

    def fn(image, rng):
        x = image.astype(np.float32)
        gray = _gray(x)
        return _like(gray + (x - gray) * rng.uniform(low, high), image)

    return fn


@registry.register("hue", random=True)
def hue(delta=0.05):
    """Rotates the hue by a fraction of the colour circle drawn from ``[-delta, delta]``."""
    low, high = _range(delta)

    def fn(image, rng):
        x = image.astype(np.float32)
        scale = 255.0 if image.dtype == np.uint8 or x.max(initial=0) > 1.0 else 1.0
        hsv = cv2.cvtColor(np.ascontiguousarray(x / scale), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(low, high) * 360.0) % 360.0
        return _like(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * scale, image)

    return fn


@registry.register("gaussian_blur", random=True)
def gaussian_blur(sigma=(0.1, 2.0), p=0.5, kernel=0):
    """With probability ``p``, blurs with a Gaussian of standard deviation drawn from ``sigma``
    (pixels; the kernel spans +-3 sigma unless ``kernel``, an odd size, is given); a single
    number is a fixed sigma.

    The SimCLR/BYOL recipe is ``gaussian_blur((0.1, 2.0))``. A fixed sigma with ``p=1``
    (``gaussian_blur(1.0, p=1)``) is deterministic, the same as `blur`, and allowed in eval
    pipelines and ``tools/preprocess.py``."""
    low, high = (sigma, sigma) if isinstance(sigma, int | float) else _range(sigma)
    if low <= 0:
        raise ValueError("sigma must be positive")
    p = float(p)
    kernel = _kernel_size(kernel)

    if low == high and p >= 1.0:
        return blur(low, kernel)

    def fn(image, rng):
        if rng.random() >= p:
            return image
        return _blur(image, rng.uniform(low, high), kernel)

    return fn


@registry.register("blur", aliases=("fixed_blur",))
def blur(sigma=1.0, kernel=0):
    """A fixed (deterministic) Gaussian blur: standard deviation ``sigma`` pixels, kernel of odd
    size ``kernel`` (0: spanning +-3 sigma), reflected borders; OpenCV's ``GaussianBlur``.

    For preprocessing a dataset (``tools/preprocess.py``) and eval pipelines, e.g.
    ``'decode|resize_pad(224)|clahe(2.0, 8)|blur(1.0)'``."""
    sigma = float(sigma)
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    kernel = _kernel_size(kernel)

    def fn(image, rng):
        return _blur(image, sigma, kernel)

    fn.random = False  # Also when built by gaussian_blur (a random op) with fixed arguments.
    return fn


def _kernel_size(kernel) -> int:
    kernel = int(kernel)
    if kernel < 0 or (kernel and kernel % 2 == 0):
        raise ValueError(f"kernel must be 0 (from sigma) or an odd size, got {kernel}")
    return kernel


def _blur(image: np.ndarray, sigma: float, kernel: int = 0) -> np.ndarray:
    k = kernel or 2 * math.ceil(3 * sigma) + 1
    out = cv2.GaussianBlur(
        image, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101
    )
    return out[..., None] if out.ndim == 2 else out


@registry.register("clahe")
def clahe(clip_limit=2.0, tile=8):
    """Contrast Limited Adaptive Histogram Equalisation on the lightness channel (uint8 input).

    Evens out under- and over-exposed photos locally while leaving hue and saturation alone.
    """
    clip_limit, tile = float(clip_limit), int(tile)
    if clip_limit <= 0 or tile <= 0:
        raise ValueError("clip_limit and tile must be positive")

    def fn(image, rng):
        _needs_uint8("clahe", image)
        # The CLAHE object is cheap and not thread-safe: one per call.
        equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile, tile))
        lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
        lab[..., 0] = equaliser.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)

    return fn


def _signed(rng, value):
    return value if rng.random() < 0.5 else -value


def _affine(img: Image.Image, coeffs) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.NEAREST)


# (name, function(PIL image, magnitude in [0, 1], rng) -> PIL image), torchvision's op set.
_RANDAUGMENT_OPS = {
    "identity": lambda img, m, rng: img,
    "autocontrast": lambda img, m, rng: ImageOps.autocontrast(img),
    "equalize": lambda img, m, rng: ImageOps.equalize(img),
    "rotate": lambda img, m, rng: img.rotate(_signed(rng, 30.0 * m)),
    "solarize": lambda img, m, rng: ImageOps.solarize(img, int(round(255 * (1 - m)))),
    "color": lambda img, m, rng: ImageEnhance.Color(img).enhance(1 + _signed(rng, 0.9 * m)),
    "posterize": lambda img, m, rng: ImageOps.posterize(img, 8 - int(round(4 * m))),
    "contrast": lambda img, m, rng: ImageEnhance.Contrast(img).enhance(1 + _signed(rng, 0.9 * m)),
    "brightness": lambda img, m, rng: ImageEnhance.Brightness(img).enhance(
        1 + _signed(rng, 0.9 * m)
    ),
    "sharpness": lambda img, m, rng: ImageEnhance.Sharpness(img).enhance(1 + _signed(rng, 0.9 * m)),
    "shear_x": lambda img, m, rng: _affine(img, (1, _signed(rng, 0.3 * m), 0, 0, 1, 0)),
    "shear_y": lambda img, m, rng: _affine(img, (1, 0, 0, _signed(rng, 0.3 * m), 1, 0)),
    "translate_x": lambda img, m, rng: _affine(
        img, (1, 0, _signed(rng, 0.45 * m * img.size[0]), 0, 1, 0)
    ),
    "translate_y": lambda img, m, rng: _affine(
        img, (1, 0, 0, 0, 1, _signed(rng, 0.45 * m * img.size[1]))
    ),
}


@registry.register("randaugment", random=True)
def randaugment(num_ops=2, magnitude=9, num_bins=31):
    """RandAugment: ``num_ops`` ops drawn uniformly (with replacement) from torchvision's 14,
    each at strength ``magnitude / (num_bins - 1)`` of its maximum (rotate 30 degrees, shear 0.3,
    translate 45% (torchvision's 150/331), enhance factors 1 +- 0.9, posterize to 4 bits, solarize
    at 0). Needs uint8 input."""
    num_ops, magnitude, num_bins = int(num_ops), float(magnitude), int(num_bins)
    if num_ops < 0 or not 0 <= magnitude <= num_bins - 1:
        raise ValueError(f"need num_ops >= 0 and 0 <= magnitude <= {num_bins - 1}")
    strength = magnitude / (num_bins - 1)
    names = list(_RANDAUGMENT_OPS)

    def fn(image, rng):
        _needs_uint8("randaugment", image)
        img = Image.fromarray(np.ascontiguousarray(image))
        for _ in range(num_ops):
            img = _RANDAUGMENT_OPS[names[int(rng.integers(len(names)))]](img, strength, rng)
        return np.asarray(img)

    return fn
