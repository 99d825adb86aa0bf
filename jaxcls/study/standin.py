"""Smoke mode's stand-in datasets: tiny synthetic image folders of a study's real shape.

A stand-in has the real dataset's class names and folder layout (flat class folders, or its own
``train/``, ``valid/``, ``test/`` subfolders), so a study config runs end to end in seconds, in
CI, without the data. Each class is a colour with noise (learnable, so curves move); images are
JPEG, with every fifth one a PNG with an alpha channel, as in the real folders users have.

A stand-in is described in the study config as ``study.smoke_data.<field>`` (``field`` is the
config's top-level dataset field it replaces: ``dataset``, ``cinic10``, ...)::

    {'classes': ('cane', 'cavallo', ...), 'layout': ('train', 'test'), 'per_class': 8, 'size': 40}
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np
from PIL import Image

STANDIN_KEYS = ("classes", "layout", "per_class", "size")
DONE = ".standin_done"


def standin(classes, layout=(), per_class: int = 8, size: int = 40) -> ml_collections.ConfigDict:
    """A stand-in description for ``study.smoke_data`` (see the module docstring)."""
    return ml_collections.ConfigDict(
        {"classes": tuple(classes), "layout": tuple(layout), "per_class": per_class, "size": size}
    )


def _class_colours(n: int, rng: np.random.Generator) -> np.ndarray:
    hues = np.linspace(0.0, 1.0, n, endpoint=False)
    base = np.stack([np.cos(2 * np.pi * (hues + s)) for s in (0.0, 1 / 3, 2 / 3)], axis=1)
    return np.clip(128 + 100 * base + rng.normal(0, 5, base.shape), 0, 255)


def make(root: str, spec, seed: int = 0) -> str:
    """Writes the stand-in ``spec`` under ``root`` (once: a finished one is reused); returns the
    ``folder:`` dataset spec of it."""
    unknown = sorted(set(spec.keys()) - set(STANDIN_KEYS))
    if unknown or not spec.get("classes"):
        raise ValueError(f"stand-in needs {STANDIN_KEYS} (classes non-empty), got {dict(spec)}")
    if os.path.exists(os.path.join(root, DONE)):
        return f"folder:{root}"
    rng = np.random.default_rng(seed)
    classes = list(spec["classes"])
    colours = _class_colours(len(classes), rng)
    size, per_class = int(spec.get("size", 40)), int(spec.get("per_class", 8))
    for split in tuple(spec.get("layout", ())) or ("",):
        for c, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                h, w = size, size + (i % 3) * size // 4  # some not square, as photos are
                pixels = colours[c] + rng.normal(0, 30, (h, w, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                if i % 5 == 4:
                    image.convert("RGBA").save(os.path.join(folder, f"{name}_{i}.png"))
                else:
                    image.save(os.path.join(folder, f"{name}_{i}.jpg"), quality=90)
    open(os.path.join(root, DONE), "w").close()
    return f"folder:{root}"
