"""Robust image decoding: any file a user may have -> uint8 RGB array, or one `DecodeError`.

Photo folders collected from the web (Animals-10 is typical) mix JPEG, PNG, GIF and WebP files with
EXIF rotations, transparency, palettes, CMYK, 16-bit channels, truncated downloads and HTML pages
saved under a .jpg name. Pillow's defaults get several of these wrong silently:

* it does not apply the EXIF orientation tag (`ImageOps.exif_transpose` does);
* a plain ``convert('RGB')`` drops alpha and exposes whatever colour the transparent pixels happen
  to store (often black or noise) -- we composite on a background colour instead (white by
  default, what an image viewer shows);
* 16-bit grayscale PNGs open as mode ``I;16`` and ``convert('L')`` clips them instead of scaling;
* decompression bombs only raise above 2x ``Image.MAX_IMAGE_PIXELS`` (a warning below that);
  we check the declared size against our own limit before decoding a single pixel;
* ``ImageFile.LOAD_TRUNCATED_IMAGES`` would fill truncated files with grey; we never set it, so
  truncation is an error.

Everything that goes wrong (empty file, not an image, corrupt or truncated data, too many pixels,
unreadable file) raises `DecodeError`, so callers handle exactly one exception type. The same
function is used by training, evaluation, prediction and the web app, so all of them see identical
pixels for the same file.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

# 89.5 Mpixel is Pillow's own warning threshold; a 10k x 9k photo is the largest we accept.
DEFAULT_MAX_PIXELS = 89_478_485
# Files larger than this are refused before reading them into memory.
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
WHITE = (255, 255, 255)
# decode_image(draft=S) keeps both sides >= DRAFT_MARGIN * S (measured on skimage's photos at
# 32-224 px targets: 1.0 gave up to 6 grey levels mean difference after the resize, 1.5 under 2).
DRAFT_MARGIN = 1.5

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class DecodeError(ValueError):
    """Raised for any file that cannot be turned into an RGB image (corrupt, truncated, empty,
    not an image, too large). The message says why; ``path`` names the file when known."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


def decode_image(
    data: bytes,
    *,
    background: tuple[int, int, int] = WHITE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    path: str | None = None,
    draft: int = 0,
) -> np.ndarray:
    """Decodes encoded image bytes into a ``uint8`` array of shape ``[H, W, 3]`` (RGB).

    Args:
      data: the encoded file contents (JPEG, PNG, GIF, WebP, BMP, TIFF, ... whatever Pillow reads).
        Multi-frame files (GIF, TIFF) give their first frame.
      background: RGB colour transparent pixels are composited on.
      max_pixels: images declaring more pixels than this are refused (decompression bombs).
      path: only used in error messages.
      draft: the side the caller will resize to (0: full size). A JPEG whose sides are both at
        least ``2 x DRAFT_MARGIN x draft`` is decoded at a reduced DCT scale (1/2, 1/4 or 1/8,
        libjpeg's ``scale_denom``, through Pillow's ``Image.draft``): the largest reduction that
        keeps both sides >= ``DRAFT_MARGIN x draft``, so the resize that follows still averages
        over several source pixels. Several times faster for photos resized to a small input;
        after the resize, the pixels differ from a full decode's by under 2 grey levels on
        average (tests/input_pipeline/test_decode_draft.py). Other formats, and smaller JPEGs,
        decode at full size, pixel for pixel as without ``draft``.

    Returns:
      A C-contiguous ``uint8`` array ``[H, W, 3]``, upright according to the EXIF orientation.

    Raises:
      DecodeError: for every kind of bad input.
    """
    if not data:
        raise DecodeError("empty file", path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than raises) for images between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0:
                raise DecodeError(f"invalid size {width}x{height}", path)
            if width * height > max_pixels:
                raise DecodeError(
                    f"too many pixels: {width}x{height} > limit {max_pixels} "
                    "(possible decompression bomb)",
                    path,
                )
            keep = math.ceil(DRAFT_MARGIN * draft)
            denominator = _draft_denominator(width, height, keep) if draft else 1
            if image.format == "JPEG" and image.mode in ("RGB", "L"):
                orientation = _exif_orientation(image)
                array = _decode_jpeg_turbo(data, width, height, denominator, orientation)
                if array is not None:
                    return array
            if denominator > 1:
                image.draft("RGB", (keep, keep))  # The same reduction (Pillow's rule).
            image.load()  # Decodes every pixel now: truncated or corrupt data raise here.
            image = _upright(image)
            array = _to_rgb(image, background)
    except DecodeError:
        raise
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image (format not recognised)", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(f"too many pixels (possible decompression bomb): {e}", path) from None
    except Exception as e:  # noqa: BLE001 -- any decoder failure is a bad file, by design.
        raise DecodeError(f"corrupt or truncated image: {type(e).__name__}: {e}", path) from None
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DecodeError(f"decoded to unexpected array {array.dtype}{array.shape}", path)
    return np.ascontiguousarray(array)


def _draft_denominator(width: int, height: int, keep: int) -> int:
    """libjpeg's DCT scale denominator for ``decode_image(draft=...)``: the largest of 8, 4, 2
    that keeps both sides >= ``keep`` (Pillow's ``JpegImageFile.draft`` rule), or 1."""
    fits = min(width // keep, height // keep)
    return next((d for d in (8, 4, 2) if fits >= d), 1)


# EXIF orientation -> the array view Pillow's ImageOps.exif_transpose would give.
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8) of an opened image; 1 when absent or unreadable."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 -- malformed EXIF must not cost us a valid image.
        return 1
    return orientation if orientation in _ORIENT else 1


def _decode_jpeg_turbo(
    data: bytes, width: int, height: int, denominator: int, orientation: int
) -> np.ndarray | None:
    """Decodes an RGB or greyscale JPEG with libjpeg-turbo straight into a numpy array
    (simplejpeg), upright by its EXIF ``orientation``, at ``1 / denominator`` of its size.

    The pixels are Pillow's own (both are libjpeg-turbo with the same DCT and upsampling; tested
    equal, reduced sizes included), without Pillow's conversion from its 4-byte pixel layout:
    a 500x375 photo decodes in about two thirds of the time. Returns None when Pillow must
    decide: any file libjpeg-turbo reports a problem with (strict mode), so the set of files
    accepted and refused stays Pillow's. (CMYK/YCCK files never come here.)"""
    try:
        array = simplejpeg.decode_jpeg(
            data,
            "rgb",
            min_height=-(-height // denominator),
            min_width=-(-width // denominator),
            strict=True,
        )
    except ValueError:
        return None
    if orientation > 1:
        array = _ORIENT[orientation](array)
    return np.ascontiguousarray(array)


def read_file(path: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Reads a file's bytes, refusing files over ``max_bytes``; any OS error is a `DecodeError`."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise DecodeError(f"file too large: {size} bytes > limit {max_bytes}", path)
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DecodeError(f"cannot read file: {e.strerror or e}", path) from None


def decode_file(path: str, **kwargs) -> np.ndarray:
    """`read_file` then `decode_image`; keyword arguments go to `decode_image`."""
    return decode_image(read_file(path), path=path, **kwargs)


def check_file(path: str) -> str | None:
    """Returns None if ``path`` decodes, else the reason it does not (for scanning datasets).

    A full decode (not ``Image.verify``) is used: verify does not catch truncated JPEGs, which are
    the most common bad file in scraped datasets.
    """
    try:
        decode_file(path)
    except DecodeError as e:
        return e.reason
    return None


def to_rgb_array(image: np.ndarray) -> np.ndarray:
    """Normalises an already-decoded in-memory array (e.g. from a tfds or built-in source) to
    ``uint8 [H, W, 3]``: grayscale is repeated over 3 channels, alpha is composited on white."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise DecodeError(f"expected an HWC image with 1, 3 or 4 channels, got {image.shape}")
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = _scale_16bit(image)
        elif np.issubdtype(image.dtype, np.floating):
            image = np.clip(np.rint(image * 255.0 if image.max() <= 1.0 else image), 0, 255)
            image = image.astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = _composite(image[..., :3], image[..., 3], WHITE)
    return np.ascontiguousarray(image)


def _upright(image: Image.Image) -> Image.Image:
    """Applies the EXIF orientation. A broken EXIF block is ignored: the pixels are still good."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 -- malformed EXIF must not cost us a valid image.
        return image


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """Converts any Pillow mode to a uint8 RGB array with the conversions Pillow gets wrong done by
    hand (alpha, palette transparency, 16-bit and 32-bit integer, float)."""
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"))
        return _composite(rgba[..., :3], rgba[..., 3], background)
    if mode in _SIXTEEN_BIT_MODES:
        gray = _scale_16bit(np.asarray(image).astype(np.uint16))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "I":
        # 32-bit integer; Pillow uses it for 16-bit PNG/TIFF data. Values above 255 mean 16-bit.
        values = np.asarray(image)
        gray = _scale_16bit(np.clip(values, 0, 65535).astype(np.uint16))
        if values.max(initial=0) <= 255:
            gray = values.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        gray = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode != "RGB":
        # L, 1, P (opaque), CMYK, YCbCr, LAB, HSV: Pillow's conversions are correct for these.
        image = image.convert("RGB")
    return np.asarray(image)


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """Maps 0..65535 to 0..255 with rounding (x / 257), so 65535 -> 255 and 32896 -> 128."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Alpha-blends ``rgb`` over a solid ``background`` colour (straight, not premultiplied)."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    bg = np.asarray(background, dtype=np.float32)
    out = rgb.astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
