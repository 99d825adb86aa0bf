"""The native area resize (jaxcls/native/resize.cc) that `resize_to` uses to shrink uint8 images:
OpenCV's INTER_AREA within one grey level on crops of every shape the pipeline makes, OpenCV's
own path where the scale is an integer or the input is not uint8, and OpenCV wherever the native
library is unavailable."""

import cv2
import numpy as np
import pytest

from input_pipeline.pp import ops_image
from jaxcls import native


def _area(image, h, w):
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 else out


def test_the_native_resize_builds_on_this_machine():
    assert native.resize_area_function() is not None


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize(
    "crop, out",
    [
        ((300, 280), (224, 224)),  # random_resized_crop of a 500x375 photo
        ((375, 500), (224, 224)),
        ((499, 333), (224, 160)),
        ((97, 61), (32, 32)),  # CIFAR-sized outputs
        ((64, 50), (32, 20)),  # integer on one axis only
        ((7, 9), (2, 1)),  # one output column
        ((200, 201), (200, 100)),  # unchanged height
    ],
)
def test_native_shrink_equals_opencv_area_within_one_grey_level(crop, out, channels):
    rng = np.random.default_rng(crop[0] * 7 + channels)
    # A crop of a larger photo: rows strided, as random_resized_crop passes them.
    base = rng.integers(0, 256, (crop[0] + 11, crop[1] + 13, channels), dtype=np.uint8)
    smooth = cv2.GaussianBlur(base, (0, 0), 3).reshape(base.shape)
    for image in (base, smooth):
        x = image[5 : 5 + crop[0], 7 : 7 + crop[1]]
        got = ops_image._shrink_area_native(x, *out)
        assert got is not None and got.shape == (*out, channels) and got.dtype == np.uint8
        diff = np.abs(got.astype(int) - _area(x, *out))
        assert diff.max() <= 1
        assert diff.mean() < 0.01
        np.testing.assert_array_equal(ops_image.resize_to(x, out), got)


def test_greyscale_2d_and_flipped_rows():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (150, 130), dtype=np.uint8)
    got = ops_image.resize_to(grey, (100, 70))
    assert got.shape == (100, 70, 1)
    assert np.abs(got.astype(int) - _area(grey, 100, 70)).max() <= 1
    flipped = rng.integers(0, 256, (150, 130, 3), dtype=np.uint8)[::-1]  # negative row stride
    got = ops_image.resize_to(flipped, (100, 70))
    assert np.abs(got.astype(int) - _area(np.ascontiguousarray(flipped), 100, 70)).max() <= 1


def test_opencv_keeps_what_it_does_faster_or_the_native_code_does_not_take():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)
    # Integer scale on both axes: OpenCV's fast path, bit for bit.
    assert ops_image._shrink_area_native(image, 224, 224) is None
    np.testing.assert_array_equal(ops_image.resize_to(image, (224, 224)), _area(image, 224, 224))
    for other in (image.astype(np.float32), image[:, ::2], image[..., ::-1], image[..., :2]):
        assert ops_image._shrink_area_native(other[:300, :300], 200, 150) is None
    small = image[:100, :100]
    assert ops_image._shrink_area_native(small, 150, 150) is None  # growing: not area


def test_without_the_native_library_opencv_resizes(monkeypatch):
    image = np.random.default_rng(3).integers(0, 256, (300, 280, 3), dtype=np.uint8)
    monkeypatch.setattr(native, "resize_area_function", lambda: None)
    assert ops_image._shrink_area_native(image, 224, 224) is None
    np.testing.assert_array_equal(ops_image.resize_to(image, (224, 224)), _area(image, 224, 224))
