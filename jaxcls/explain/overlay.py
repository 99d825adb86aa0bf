"""Saliency maps back on the original photo: undo the eval pipeline's geometry, then colour-blend.

A map computed on the model input (e.g. 224x224 after ``resize_small(256)|center_crop(224)`` or
``resize_pad(224)``) does not line up with the user's photo. `Geometry` replays the geometric ops
of the eval pipeline string on boxes instead of pixels, tracking which rectangle of the original
image each rectangle of the model input shows. `to_original` then cuts the map to the part that
shows the photo (dropping letterbox padding), resizes it to that part's size in original pixels
and places it on a canvas of the original size (zero where a crop cut the photo off).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from input_pipeline.pp import registry

# Ops that change the geometry, by canonical name; every other op only changes values.
_GEOMETRIC = {"resize", "resize_small", "center_crop", "resize_pad"}
_OP_ALIASES = {"central_crop": "center_crop", "letterbox": "resize_pad"}


def _hw(size) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


@dataclasses.dataclass
class Geometry:
    """Where the model input's pixels come from in the original image.

    ``content`` (top, left, bottom, right) is the box of the model input that shows the photo
    (smaller than the input when the pipeline letterboxes), and ``source`` the box of the
    original image that this content shows (smaller than the photo when the pipeline crops).
    """

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content: tuple[float, float, float, float]
    source: tuple[float, float, float, float]

    @classmethod
    def from_pipeline(cls, pipeline: str, original_hw) -> Geometry:
        """Replays the geometric ops of ``pipeline`` on an image of ``original_hw`` (H, W)."""
        h, w = (int(v) for v in original_hw)
        content = (0.0, 0.0, float(h), float(w))
        source = (0.0, 0.0, float(h), float(w))
        for text in (t for t in pipeline.split("|") if t.strip()):
            name, args, kwargs = registry.parse_call(text)
            name = _OP_ALIASES.get(name, name)
            if name not in _GEOMETRIC:
                continue
            size = args[0] if args else kwargs["size"]
            if name in ("resize", "resize_small"):
                if name == "resize":
                    nh, nw = _hw(size)
                else:
                    scale = int(size) / min(h, w)
                    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
                sy, sx = nh / h, nw / w
                t, left, b, r = content
                content = (t * sy, left * sx, b * sy, r * sx)
                h, w = nh, nw
            elif name == "center_crop":
                ch, cw = _hw(size)
                top, left = (h - ch) // 2, (w - cw) // 2
                content, source = _crop(content, source, (top, left, top + ch, left + cw))
                h, w = ch, cw
            else:  # resize_pad: fit inside, keep the aspect ratio, pad centred.
                th, tw = _hw(size)
                scale = min(th / h, tw / w)
                nh, nw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
                top, left = (th - nh) // 2, (tw - nw) // 2
                sy, sx = nh / h, nw / w
                t, lft, b, r = content
                content = (top + t * sy, left + lft * sx, top + b * sy, left + r * sx)
                h, w = th, tw
        return cls((int(original_hw[0]), int(original_hw[1])), (h, w), content, source)


def _crop(content, source, window):
    """Intersects ``content`` with the crop ``window``; shrinks ``source`` to match."""
    t, left, b, r = content
    st, sl, sb, sr = source
    wt, wl, wb, wr = window
    nt, nl, nb, nr = max(t, wt), max(left, wl), min(b, wb), min(r, wr)
    if nb <= nt or nr <= nl:
        raise ValueError("the crop removes the whole image")
    fy, fx = (sb - st) / (b - t), (sr - sl) / (r - left)
    new_source = (
        st + (nt - t) * fy,
        sl + (nl - left) * fx,
        st + (nb - t) * fy,
        sl + (nr - left) * fx,
    )
    return (nt - wt, nl - wl, nb - wt, nr - wl), new_source


def to_original(heat: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Maps a [h, w] map of the model input (any resolution) onto the original image [H, W].

    Pixels of the original image that the model never saw (cropped away) get 0.
    """
    heat = np.asarray(heat, np.float32)
    ih, iw = geometry.input_hw
    if heat.shape != (ih, iw):  # E.g. a raw CAM: it covers the model input uniformly.
        heat = cv2.resize(heat, (iw, ih), interpolation=cv2.INTER_LINEAR)
    t, left, b, r = (int(round(v)) for v in geometry.content)
    rows = slice(t, max(b, t + 1))
    cols = slice(left, max(r, left + 1))
    part = heat[rows, cols]
    oh, ow = geometry.original_hw
    st, sl, sb, sr = geometry.source
    top, lft = int(round(st)), int(round(sl))
    hh, ww = max(1, int(round(sb)) - top), max(1, int(round(sr)) - lft)
    canvas = np.zeros((oh, ow), np.float32)
    canvas[top : top + hh, lft : lft + ww] = cv2.resize(
        part, (ww, hh), interpolation=cv2.INTER_LINEAR
    )[: oh - top, : ow - lft]
    return canvas


def colorize(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [H, W] map in [0, 1] -> uint8 RGB [H, W, 3] through a matplotlib colormap."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(np.asarray(heat, np.float32), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet"):
    """Overlays a [H, W] map in [0, 1] on a uint8 RGB image of the same size.

    The colour is weighted by the map itself, so unimportant regions keep the photo's colours.
    """
    image = np.asarray(image)
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and map {heat.shape} differ in size")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    weight = alpha * np.clip(heat, 0.0, 1.0)[..., None]
    out = (1.0 - weight) * image[..., :3].astype(np.float32) + weight * colorize(heat, cmap)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
