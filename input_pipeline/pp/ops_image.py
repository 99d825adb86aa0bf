"""Image ops: decode, resize, crop, flip and value scaling, registered for pipeline strings.

Each op is a factory registered in `registry`: it takes the op's arguments and returns
``fn(image, rng)`` on one HWC numpy image; random ops draw only from ``rng``.

Images stay ``uint8`` until an op needs floats (``value_range``, ``normalize``, ...), which keeps
resizing and cropping cheap. Geometry ops run on either dtype.

Reference: big_vision's ``pp/ops_image.py`` (op names and string syntax); torchvision's
``RandomResizedCrop`` (the Inception crop sampling rule, Szegedy et al. 2015).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from input_pipeline import decode as decode_lib
from input_pipeline.pp import registry
from jaxcls import native

INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Helpers


def size_hw(size) -> tuple[int, int]:
    """``32`` -> ``(32, 32)``; ``(h, w)`` -> ``(h, w)``; validates positivity."""
    if isinstance(size, int | np.integer):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return h, w


def _interpolation(method: str) -> int:
    if method not in INTERPOLATION:
        raise ValueError(f"unknown interpolation {method!r}; known: {sorted(INTERPOLATION)}")
    return INTERPOLATION[method]


def resize_to(image: np.ndarray, hw: tuple[int, int], method: str = "bilinear", antialias=True):
    """Resizes with OpenCV. When shrinking with ``antialias``, INTER_AREA is used (a box filter
    over the source pixels) so small outputs do not alias; OpenCV keeps uint8 as uint8."""
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    interp = _interpolation(method)
    if antialias and h <= image.shape[0] and w <= image.shape[1] and method != "nearest":
        out = _shrink_area_native(image, h, w)
        if out is not None:
            return out
        interp = cv2.INTER_AREA
    out = cv2.resize(image, (w, h), interpolation=interp)
    return out[..., None] if out.ndim == 2 else out


def _shrink_area_native(image: np.ndarray, h: int, w: int) -> np.ndarray | None:
    """INTER_AREA shrinking of a uint8 image by jaxcls' native resize (`jaxcls.native`): the
    same weights as OpenCV, within one grey level, 2-3x faster where the scale is not an integer
    on both axes. None where it does not apply (OpenCV's own integer-scale path is faster still,
    other dtypes, strided pixels) or is unavailable: the caller uses OpenCV."""
    sh, sw = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or channels not in (1, 3, 4)
        or (sh % h == 0 and sw % w == 0)
        or image.strides[1] != channels
        or (image.ndim == 3 and image.strides[2] != 1)
    ):
        return None
    fn = native.resize_area_function()
    if fn is None:
        return None
    out = np.empty((h, w, channels), np.uint8)
    if fn(image.ctypes.data, sh, sw, image.strides[0], channels, out.ctypes.data, h, w) != 0:
        return None
    return out


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# Ops


@registry.register("decode")
def decode(background=(255, 255, 255), draft=0):
    """Encoded bytes -> uint8 RGB (see `decode.decode_image`); in-memory arrays -> uint8 RGB.

    ``draft=S``: JPEGs at least 2S on both sides decode at a reduced DCT scale that keeps both
    sides >= S (for a following ``resize(S)`` / ``resize_small(S)``; much faster for photos)."""
    background = tuple(int(c) for c in background)
    draft = int(draft)
    if draft < 0:
        raise ValueError(f"draft must be >= 0, got {draft}")

    def fn(image, rng):
        if isinstance(image, bytes | bytearray | memoryview):
            return decode_lib.decode_image(bytes(image), background=background, draft=draft)
        return decode_lib.to_rgb_array(image)

    return fn


@registry.register("resize")
def resize(size, method="bilinear", antialias=True):
    """Resizes to ``size`` (int for square, or (h, w)), ignoring the aspect ratio."""
    hw = size_hw(size)
    _interpolation(method)
    return lambda image, rng: resize_to(image, hw, method, antialias)


@registry.register("resize_small")
def resize_small(size, method="bilinear", antialias=True, backend="opencv"):
    """Resizes so the shorter side is ``size``, keeping the aspect ratio (before a center crop).

    ``backend='pil'`` reproduces torchvision's ``Resize(size)`` on a PIL image, the eval transform
    of timm and torchvision weights: the longer side truncated (``int(size * long / short)``)
    and Pillow's antialiased resampling (``Image.resize``), so converted weights see the pixels
    their origin saw (tests/weights/test_contract.py)."""
    size = int(size)
    _interpolation(method)
    if backend not in ("opencv", "pil"):
        raise ValueError(f"backend must be 'opencv' or 'pil', got {backend!r}")

    def fn(image, rng):
        h, w = image.shape[:2]
        if backend == "pil":
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(size * long / short)
            hw = (size, new_long) if h <= w else (new_long, size)
            return _resize_pil(image, hw, method)
        scale = size / min(h, w)
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        return resize_to(image, hw, method, antialias)

    return fn


def _resize_pil(image: np.ndarray, hw: tuple[int, int], method: str) -> np.ndarray:
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if method not in resample:
        raise ValueError(f"backend 'pil' supports {sorted(resample)}, got {method!r}")
    if image.shape[:2] == tuple(hw):
        return image
    out = Image.fromarray(np.ascontiguousarray(image)).resize((hw[1], hw[0]), resample[method])
    return np.asarray(out)


@registry.register("center_crop", aliases=("central_crop",))
def center_crop(size, offset="floor"):
    """Crops the central ``size`` region; the image must be at least that large.

    ``offset='round'`` places an odd margin as torchvision's ``CenterCrop`` does
    (``int(round(margin / 2))``, Python's round half to even) instead of ``margin // 2``."""
    ch, cw = size_hw(size)
    if offset not in ("floor", "round"):
        raise ValueError(f"offset must be 'floor' or 'round', got {offset!r}")
    half = (lambda m: m // 2) if offset == "floor" else (lambda m: int(round(m / 2.0)))

    def fn(image, rng):
        h, w = image.shape[:2]
        if h < ch or w < cw:
            raise ValueError(f"center_crop({ch}, {cw}) on a smaller {h}x{w} image; resize first")
        top, left = half(h - ch), half(w - cw)
        return image[top : top + ch, left : left + cw]

    return fn


@registry.register("random_crop", random=True)
def random_crop(size, padding=0, pad_mode="reflect"):
    """Pads each side by ``padding`` (``'reflect'``, ``'edge'`` or ``'constant'`` zeros), then
    crops a uniformly placed ``size`` window.

    The CIFAR recipe is ``random_crop(32, padding=4)``."""
    ch, cw = size_hw(size)
    padding = int(padding)
    if pad_mode not in ("reflect", "edge", "constant"):
        raise ValueError(f"pad_mode must be reflect, edge or constant, got {pad_mode!r}")

    def fn(image, rng):
        if padding:
            pad = ((padding, padding), (padding, padding), (0, 0))
            image = np.pad(image, pad, mode=pad_mode)
        h, w = image.shape[:2]
        if h < ch or w < cw:
            raise ValueError(f"random_crop({ch}, {cw}) on a smaller {h}x{w} image; resize first")
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return image[top : top + ch, left : left + cw]

    return fn


@registry.register("random_resized_crop", random=True, aliases=("inception_crop",))
def random_resized_crop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), method="bilinear"):
    """Inception-style crop: a random area fraction in ``scale`` and aspect ratio in ``ratio``
    (log-uniform), resized to ``size``. After 10 failed draws falls back to a central crop of
    the clamped aspect ratio (torchvision's rule)."""
    hw = size_hw(size)
    smin, smax = (float(s) for s in scale)
    rmin, rmax = (float(r) for r in ratio)
    if not 0 < smin <= smax <= 1 or not 0 < rmin <= rmax:
        raise ValueError(f"bad scale {scale} or ratio {ratio}")
    _interpolation(method)

    def fn(image, rng):
        h, w = image.shape[:2]
        area = h * w
        for _ in range(10):
            target = area * rng.uniform(smin, smax)
            aspect = math.exp(rng.uniform(math.log(rmin), math.log(rmax)))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(rng.integers(0, h - ch + 1))
                left = int(rng.integers(0, w - cw + 1))
                break
        else:
            aspect = w / h
            if aspect < rmin:
                cw, ch = w, int(round(w / rmin))
            elif aspect > rmax:
                ch, cw = h, int(round(h * rmax))
            else:
                ch, cw = h, w
            top, left = (h - ch) // 2, (w - cw) // 2
        crop = image[top : top + ch, left : left + cw]
        return resize_to(crop, hw, method)

    return fn


@registry.register("flip_lr", random=True)
def flip_lr(p=0.5):
    """Mirrors left-right with probability ``p``."""
    p = float(p)

    def fn(image, rng):
        if rng.random() >= p:
            return image
        if image.ndim == 3 and 1 < image.shape[2] <= 4 and image.dtype in (np.uint8, np.float32):
            # A contiguous mirrored copy (vectorised): 0.01 ms at 224x224x3 uint8, where the
            # negative-stride view costs the next op a 0.28 ms strided copy.
            return cv2.flip(np.ascontiguousarray(image), 1)
        return image[:, ::-1]

    return fn


@registry.register("value_range")
def value_range(vmin=-1.0, vmax=1.0, in_min=0.0, in_max=255.0):
    """Linearly maps [in_min, in_max] (default uint8 range) to [vmin, vmax] as float32."""
    vmin, vmax, in_min, in_max = (float(v) for v in (vmin, vmax, in_min, in_max))
    if in_max <= in_min:
        raise ValueError("in_max must exceed in_min")
    scale = (vmax - vmin) / (in_max - in_min)

    def fn(image, rng):
        return ((to_float(image) - in_min) * scale + vmin).astype(np.float32)

    return fn


@registry.register("normalize")
def normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(x - mean) / std per channel on the 0..1 scale (uint8 input is divided by 255 first).

    ``normalize('imagenet')`` uses the ImageNet statistics of torchvision/timm weights.
    """
    if mean == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    if mean.size not in (1, 3) or std.size not in (1, 3) or np.any(std <= 0):
        raise ValueError(f"mean/std must have 1 or 3 entries and std > 0, got {mean}, {std}")

    # uint8 input: the result for each of the 256 values per channel, looked up in one vectorised
    # pass (cv2.LUT, 0.18 vs 0.7-2.6 ms at 224x224x3); the same float32 arithmetic as below, so the
    # same bits.
    table = ((np.arange(256, dtype=np.float32)[:, None] / 255.0 - mean) / std).astype(np.float32)
    table = np.ascontiguousarray(np.broadcast_to(table, (256, 3))).reshape(256, 1, 3)

    def fn(image, rng):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            return cv2.LUT(np.ascontiguousarray(image), table)
        x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else to_float(image)
        return ((x - mean) / std).astype(np.float32)

    return fn
