"""Preprocessing ops: a registry of tiny image functions composed by a big_vision-style string.

A pipeline string such as ``'decode|resize(32)|flip_lr|value_range(-1, 1)'`` is parsed by `parse`
into a `Preprocess` callable. Each op is built by a registered *factory* that takes the op's
arguments (Python literals, positional or keyword) and returns a function ``op(image, rng)`` on one
HWC numpy image. Random ops draw only from ``rng``, the ``np.random.Generator`` grain hands to
``random_map`` for each record, so a run is reproducible from its seed and resumable mid-epoch.

Images stay ``uint8`` until an op needs floats (``value_range``, ``normalize``, ...), which keeps
resizing and cropping cheap. Geometry ops run on either dtype.

Reference: big_vision's ``pp/ops_image.py`` (op names and string syntax); torchvision's
``RandomResizedCrop`` (the Inception crop sampling rule, Szegedy et al. 2015).
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable

import cv2
import numpy as np

from input_pipeline import decode as decode_lib

OpFn = Callable[[np.ndarray, np.random.Generator | None], np.ndarray]


@dataclasses.dataclass(frozen=True)
class _Registered:
    factory: Callable[..., OpFn]
    random: bool


_REGISTRY: dict[str, _Registered] = {}

INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register(name: str, *, random: bool = False, aliases: tuple[str, ...] = ()):
    """Registers an op factory under ``name`` (and ``aliases``). ``random`` ops need an rng."""

    def wrap(factory):
        for n in (name, *aliases):
            if n in _REGISTRY:
                raise ValueError(f"op {n!r} registered twice")
            _REGISTRY[n] = _Registered(factory, random)
        return factory

    return wrap


def known_ops() -> list[str]:
    return sorted(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class Op:
    """One parsed op: its text (as written), whether it is random, and the built function."""

    text: str
    random: bool
    fn: OpFn


class Preprocess:
    """A parsed pipeline: applies its ops in order to one image, with one per-record rng."""

    def __init__(self, spec: str, ops: list[Op]):
        self.spec = spec
        self.ops = ops

    @property
    def is_random(self) -> bool:
        return any(op.random for op in self.ops)

    def __call__(self, image, rng: np.random.Generator | None = None) -> np.ndarray:
        for op in self.ops:
            if op.random and rng is None:
                raise ValueError(f"op {op.text!r} is random and needs an rng (use random_map)")
            image = op.fn(image, rng)
        return image

    def __repr__(self) -> str:
        return f"Preprocess({self.spec!r})"


def parse(spec: str) -> Preprocess:
    """Parses ``'op1|op2(arg, key=value)|...'`` into a `Preprocess`.

    Arguments must be Python literals (numbers, strings, tuples, lists, None, True/False).

    Raises:
      ValueError: for a syntax error, an unknown op (listing the known ones) or bad arguments.
    """
    ops = []
    for text in (part.strip() for part in spec.split("|")):
        if not text:
            continue
        name, args, kwargs = _parse_call(text)
        if name not in _REGISTRY:
            raise ValueError(f"unknown preprocessing op {name!r} in {spec!r}; known: {known_ops()}")
        entry = _REGISTRY[name]
        try:
            fn = entry.factory(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad arguments for op {text!r}: {e}") from None
        ops.append(Op(text, entry.random, fn))
    if not ops:
        raise ValueError(f"empty preprocessing pipeline {spec!r}")
    return Preprocess(spec, ops)


def _parse_call(text: str) -> tuple[str, list, dict]:
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse preprocessing op {text!r}") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ValueError(f"op arguments must be literals in {text!r}") from None
        return node.func.id, args, kwargs
    raise ValueError(f"expected 'name' or 'name(args)', got {text!r}")


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
        interp = cv2.INTER_AREA
    out = cv2.resize(image, (w, h), interpolation=interp)
    return out[..., None] if out.ndim == 2 else out


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# Ops


@register("decode")
def decode(background=(255, 255, 255)):
    """Encoded bytes -> uint8 RGB (see `decode.decode_image`); in-memory arrays -> uint8 RGB."""
    background = tuple(int(c) for c in background)

    def fn(image, rng):
        if isinstance(image, bytes | bytearray | memoryview):
            return decode_lib.decode_image(bytes(image), background=background)
        return decode_lib.to_rgb_array(image)

    return fn


@register("resize")
def resize(size, method="bilinear", antialias=True):
    """Resizes to ``size`` (int for square, or (h, w)), ignoring the aspect ratio."""
    hw = size_hw(size)
    _interpolation(method)
    return lambda image, rng: resize_to(image, hw, method, antialias)


@register("resize_small")
def resize_small(size, method="bilinear", antialias=True):
    """Resizes so the shorter side is ``size``, keeping the aspect ratio (before a center crop)."""
    size = int(size)
    _interpolation(method)

    def fn(image, rng):
        h, w = image.shape[:2]
        scale = size / min(h, w)
        hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        return resize_to(image, hw, method, antialias)

    return fn


@register("center_crop", aliases=("central_crop",))
def center_crop(size):
    """Crops the central ``size`` region; the image must be at least that large."""
    ch, cw = size_hw(size)

    def fn(image, rng):
        h, w = image.shape[:2]
        if h < ch or w < cw:
            raise ValueError(f"center_crop({ch}, {cw}) on a smaller {h}x{w} image; resize first")
        top, left = (h - ch) // 2, (w - cw) // 2
        return image[top : top + ch, left : left + cw]

    return fn


@register("random_crop", random=True)
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


@register("random_resized_crop", random=True, aliases=("inception_crop",))
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


@register("flip_lr", random=True)
def flip_lr(p=0.5):
    """Mirrors left-right with probability ``p``."""
    p = float(p)

    def fn(image, rng):
        return image[:, ::-1] if rng.random() < p else image

    return fn


@register("value_range")
def value_range(vmin=-1.0, vmax=1.0, in_min=0.0, in_max=255.0):
    """Linearly maps [in_min, in_max] (default uint8 range) to [vmin, vmax] as float32."""
    vmin, vmax, in_min, in_max = (float(v) for v in (vmin, vmax, in_min, in_max))
    if in_max <= in_min:
        raise ValueError("in_max must exceed in_min")
    scale = (vmax - vmin) / (in_max - in_min)

    def fn(image, rng):
        return ((to_float(image) - in_min) * scale + vmin).astype(np.float32)

    return fn


@register("normalize")
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

    def fn(image, rng):
        x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else to_float(image)
        return ((x - mean) / std).astype(np.float32)

    return fn


# The augmentation ops register themselves into the same registry; importing them here makes
# every op available to anyone who imports `ops`. (At the end: augment imports from this module.)
from input_pipeline import augment  # noqa: E402, F401
