"""The augmentation ops one by one (exact where an exact answer exists), then all in a pipeline."""

import numpy as np
import pytest

from input_pipeline import pipeline, pp

from .conftest import make_config


def run(spec, image, seed=0):
    return pp.parse(spec)(image, np.random.default_rng(seed))


def photo(h=24, w=32, seed=0):
    """A smooth colourful image plus noise (so every op has something to change)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([200 * x + 30, 180 * y + 40, 120 - 80 * x * y], -1)
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def test_resize_pad_keeps_aspect_and_pads_with_fill():
    image = np.full((20, 40, 3), 100, np.uint8)
    out = run("resize_pad(16, fill=(1, 2, 3))", image)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[4:12], 100)  # 20x40 -> 8x16, centred.
    np.testing.assert_array_equal(out[:4, 0], np.tile([1, 2, 3], (4, 1)))
    np.testing.assert_array_equal(out[12:, -1], np.tile([1, 2, 3], (4, 1)))
    assert run("letterbox((10, 40))", image).shape == (10, 40, 3)


def test_rotate_by_90_is_exact_and_range_is_respected():
    image = photo(9, 9)
    np.testing.assert_array_equal(run("rotate((90, 90))", image), np.rot90(image, 1))
    np.testing.assert_array_equal(run("rotate(0)", image), image)
    out = run("rotate((45, 45), fill_mode='constant', fill=7)", np.full((9, 9, 3), 200, np.uint8))
    assert out[0, 0, 0] == 7 and out[4, 4, 0] == 200


def test_zoom_and_shift_keep_size_and_move_content():
    image = photo()
    np.testing.assert_array_equal(run("zoom(0)", image), image)
    zoomed = run("zoom((2.0, 2.0))", image)
    assert zoomed.shape == image.shape
    # Zooming in 2x about the centre: the centre pixel stays, the corner shows a central pixel.
    np.testing.assert_allclose(zoomed[12, 16], image[12, 16], atol=12)
    shifted = run("shift((0.25, 0.25), fill_mode='constant')", image)
    np.testing.assert_array_equal(shifted[6:, 8:], image[:-6, :-8])
    assert np.all(shifted[:6] == 0)
    with pytest.raises(ValueError, match="positive"):
        pp.parse("zoom((-1, 0.5))")


def test_brightness_contrast_saturation_exact_values():
    image = np.full((2, 2, 3), 100, np.uint8)
    np.testing.assert_array_equal(run("brightness((0.1, 0.1))", image), 126)  # 100 + 25.5.
    np.testing.assert_array_equal(run("brightness((1, 1))", image), 255)  # Clipped.
    assert run("brightness((0.1, 0.1))", image.astype(np.float32))[0, 0, 0] == pytest.approx(125.5)
    two = np.array([[[50, 50, 50], [150, 150, 150]]], np.uint8)
    np.testing.assert_array_equal(run("contrast((2, 2))", two)[0, :, 0], [0, 200])
    red = np.array([[[200, 0, 0]]], np.uint8)
    gray = run("saturation((0, 0))", red)
    assert gray[0, 0, 0] == gray[0, 0, 1] == gray[0, 0, 2] == round(0.299 * 200)
    np.testing.assert_array_equal(run("saturation((1, 1))", red), red)


def test_hue_rotates_colours():
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(run("hue((0.5, 0.5))", red)[0, 0], [0, 255, 255])  # Cyan.
    np.testing.assert_array_equal(
        run("hue((0.3333333, 0.3333333))", red)[0, 0], [0, 255, 0]
    )  # Green.
    np.testing.assert_allclose(run("hue((0.5, 0.5))", red / 255.0)[0, 0], [0, 1, 1], atol=1e-6)


def test_gaussian_blur_smooths_noise_and_keeps_constants():
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    blurred = run("gaussian_blur((1.5, 1.5), p=1.0)", noise)
    assert blurred.shape == noise.shape and blurred.std() < noise.std() / 2
    np.testing.assert_array_equal(run("gaussian_blur(p=1.0)", np.full((8, 8, 3), 9, np.uint8)), 9)
    np.testing.assert_array_equal(run("gaussian_blur(p=0.0)", noise), noise)


def test_clahe_raises_local_contrast_of_a_dull_photo():
    dull = (photo(64, 64).astype(np.float32) * 0.2 + 100).astype(np.uint8)
    out = run("clahe(clip_limit=4.0, tile=4)", dull)
    assert out.dtype == np.uint8 and out.shape == dull.shape
    assert out.std() > 1.3 * dull.std()
    with pytest.raises(ValueError, match="before value_range"):
        run("value_range(0, 1)|clahe", dull)


def test_randaugment_is_seeded_and_varied():
    image = photo()
    outs = [run("randaugment(2, 9)", image, seed) for seed in range(12)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(outs[3], run("randaugment(2, 9)", image, 3))
    assert len({o.tobytes() for o in outs}) >= 10
    np.testing.assert_array_equal(run("randaugment(0)", image), image)
    with pytest.raises(ValueError, match="magnitude"):
        pp.parse("randaugment(2, 40)")


@pytest.mark.parametrize(
    "spec",
    [
        "rotate(20)",
        "zoom(0.2)",
        "shift(0.1)",
        "brightness(0.2)",
        "contrast(0.3)",
        "saturation(0.3)",
        "hue(0.1)",
        "gaussian_blur",
        "randaugment",
    ],
)
def test_random_ops_are_reproducible_per_seed(spec):
    image = photo()
    a = run(spec, image, seed=5)
    np.testing.assert_array_equal(a, run(spec, image, seed=5))
    assert a.shape == image.shape and a.dtype == np.uint8
    assert any(not np.array_equal(run(spec, image, s), a) for s in range(6, 12))


def test_every_op_inside_the_grain_pipeline():
    train = (
        "decode|resize_pad(20)|rotate(10)|zoom(0.1)|shift(0.1)|brightness(0.1)|contrast(0.2)"
        "|saturation(0.2)|hue(0.05)|gaussian_blur|clahe|randaugment(1, 5)|random_crop(16)"
        "|flip_lr|normalize('imagenet')"
    )
    config = make_config("digits", image_size=16, train_pipeline=train)
    data = pipeline.build_data(config, None)
    it = iter(pipeline.train_dataset(data, config, batch_size=8, seed=0))
    a = next(it)["image"]
    assert a.shape == (8, 16, 16, 3) and np.isfinite(a).all()
    b = next(iter(pipeline.train_dataset(data, config, batch_size=8, seed=0)))["image"]
    np.testing.assert_array_equal(a, b)
