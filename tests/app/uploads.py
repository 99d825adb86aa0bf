"""Uploads for the web-app tests: real photos and each kind of bad file, as (name, bytes, reason)
where reason is a fragment of the message the app must show."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def photo(name: str = "chelsea") -> bytes:
    """One of scikit-image's photos as a JPEG."""
    from skimage import data

    return jpeg(getattr(data, name)())


def pixel_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb: the
    decoder must refuse it from the header, before allocating anything)."""
    data = png(np.zeros((1, 1, 3), np.uint8))
    ihdr = data.index(b"IHDR")
    body = struct.pack(">II", width, height) + data[ihdr + 12 : ihdr + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF)
    return data[: ihdr + 4] + body + crc + data[ihdr + 21 :]


def noise_png(side: int = 400, seed: int = 0) -> bytes:
    """An incompressible PNG of about ``3 * side**2`` bytes."""
    rng = np.random.default_rng(seed)
    return png(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))


def bad_uploads(max_bytes: int) -> list[tuple[str, bytes, str]]:
    """Each kind of bad upload with the fragment of the message it must produce (``max_bytes``:
    the app's byte limit; the noise PNG is larger)."""
    good = photo("coffee")
    big = noise_png()
    assert len(big) > max_bytes
    return [
        ("empty.jpg", b"", "empty file"),
        ("page.jpg", b"<!doctype html><html><body>404 not found</body></html>", "not an image"),
        ("truncated.jpg", good[: len(good) // 2], "corrupt or truncated image"),
        ("huge.png", big, "file too large"),
        ("bomb.png", pixel_bomb(), "too many pixels"),
    ]
