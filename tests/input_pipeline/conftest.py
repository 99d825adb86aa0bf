"""Fixtures for the input pipeline tests: synthetic class-per-folder image trees and configs."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxcls import config_base

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def write_image(path, array, fmt=None, **save_kwargs):
    """Saves a uint8 HWC array (or a PIL image) to ``path``; returns the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.asarray(array))
    image.save(path, format=fmt, **save_kwargs)
    return str(path)


def solid(colour, hw=(12, 16), noise_seed=None):
    """A solid-colour uint8 image, optionally with a little seeded noise so files differ."""
    image = np.empty((*hw, 3), np.uint8)
    image[:] = colour
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
        image = np.clip(image.astype(int) + rng.integers(-8, 9, image.shape), 0, 255)
        image = image.astype(np.uint8)
    return image


@pytest.fixture
def make_folder(tmp_path):
    """Returns ``make(counts: dict[class, n], root_name='data') -> root`` writing PNG/JPEG files
    whose colour encodes the class (so a test can check labels from pixels)."""

    def make(counts, root_name="data"):
        root = tmp_path / root_name
        for c, (name, n) in enumerate(counts.items()):
            colour = list(COLOURS.values())[c % len(COLOURS)]
            for i in range(n):
                ext = "png" if i % 2 else "jpg"
                write_image(root / name / f"img_{i:03d}.{ext}", solid(colour, noise_seed=i))
        return str(root)

    return make


def make_config(dataset="digits", **data):
    """A config like the recipes': ``base_config()`` with ``config.dataset`` and the given
    ``config.data.*`` fields (``image_size`` 16 unless given). Built from a plain dict, so a field
    may take another type than its default (e.g. ``image_size=(12, 16)``, a dict ``class_map``)."""
    fields = config_base.base_config().to_dict()
    fields["dataset"] = dataset
    fields["data"].update({"image_size": 16, **data})
    return ml_collections.ConfigDict(fields)
