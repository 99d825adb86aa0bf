"""Each preprocessing op alone, and the pipeline-string parser."""

import io

import numpy as np
import pytest
from PIL import Image

from input_pipeline import pp


def rng(seed=0):
    return np.random.default_rng(seed)


def gradient_image(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 77)], -1).astype(
        np.uint8
    )


def run(spec, image, seed=0):
    return pp.parse(spec)(image, rng(seed))


def test_parser_reads_names_args_and_keywords():
    parsed = pp.parse("decode | resize((8, 6), method='bicubic')|flip_lr(p=1.0)|value_range(0, 1)")
    assert [op.text for op in parsed.ops] == [
        "decode",
        "resize((8, 6), method='bicubic')",
        "flip_lr(p=1.0)",
        "value_range(0, 1)",
    ]
    assert parsed.is_random
    assert not pp.parse("decode|resize(4)").is_random


@pytest.mark.parametrize(
    "spec, message",
    [
        ("decode|rezise(32)", "unknown preprocessing op 'rezise'.*known:.*'resize'"),
        ("resize(32", "cannot parse"),
        ("resize(size=x)", "must be literals"),
        ("resize(32, nonsense=1)", "bad arguments"),
        ("resize(-3)", "bad arguments.*positive"),
        ("resize(8, method='cubicle')", "unknown interpolation"),
        ("", "empty"),
    ],
)
def test_parser_errors_are_clear(spec, message):
    with pytest.raises(ValueError, match=message):
        pp.parse(spec)


def test_random_op_without_rng_is_an_error():
    with pytest.raises(ValueError, match="needs an rng"):
        pp.parse("flip_lr")(gradient_image(), None)


def test_decode_op_on_bytes_and_arrays():
    image = gradient_image()
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    np.testing.assert_array_equal(run("decode", buf.getvalue()), image)
    gray = image[..., 0]
    assert run("decode", gray).shape == (20, 30, 3)


def test_resize_square_and_hw_keeps_dtype():
    image = gradient_image()
    assert run("resize(8)", image).shape == (8, 8, 3)
    out = run("resize((10, 40))", image)
    assert out.shape == (10, 40, 3) and out.dtype == np.uint8
    # Uniform channels stay uniform under any interpolation.
    assert np.all(out[..., 2] == 77)
    assert run("resize(20, method='nearest')", np.zeros((5, 5, 3), np.float32)).dtype == np.float32


def test_resize_small_keeps_aspect_ratio():
    assert run("resize_small(10)", gradient_image(20, 30)).shape == (10, 15, 3)
    assert run("resize_small(60)", gradient_image(30, 20)).shape == (90, 60, 3)


def test_center_crop_takes_the_middle():
    image = gradient_image()
    out = run("center_crop((4, 6))", image)
    np.testing.assert_array_equal(out, image[8:12, 12:18])
    np.testing.assert_array_equal(run("central_crop(4)", image), image[8:12, 13:17])
    with pytest.raises(ValueError, match="smaller"):
        run("center_crop(40)", image)


def test_random_crop_is_a_window_of_the_padded_image_and_seeded():
    image = gradient_image()
    crops = {run("random_crop(8)", image, seed).tobytes() for seed in range(20)}
    assert len(crops) > 5
    a = run("random_crop((8, 8))", image, 3)
    np.testing.assert_array_equal(a, run("random_crop((8, 8))", image, 3))
    # The crop is an actual window of the input.
    found = any(
        np.array_equal(image[t : t + 8, x : x + 8], a) for t in range(13) for x in range(23)
    )
    assert found
    padded = run(
        "random_crop(20, padding=4, pad_mode='constant')", np.full((20, 20, 3), 9, np.uint8)
    )
    assert padded.shape == (20, 20, 3)


def test_random_resized_crop_output_size_and_variety():
    image = gradient_image(40, 60)
    outs = [run("random_resized_crop(16)", image, s) for s in range(10)]
    assert all(o.shape == (16, 16, 3) for o in outs)
    assert len({o.tobytes() for o in outs}) == 10
    # scale=(1, 1) with the image's own aspect ratio range: the full image.
    full = run("inception_crop(16, scale=(1.0, 1.0), ratio=(1.5, 1.5))", image)
    np.testing.assert_array_equal(full, pp.resize_to(image, (16, 16)))


def test_flip_lr_probability_and_mirror():
    image = gradient_image()
    np.testing.assert_array_equal(run("flip_lr(p=1.0)", image), image[:, ::-1])
    np.testing.assert_array_equal(run("flip_lr(p=0.0)", image), image)
    flipped = sum(run("flip_lr", image, s)[0, 0, 0] != image[0, 0, 0] for s in range(200))
    assert 60 < flipped < 140


def test_flip_copy_equals_the_mirrored_view_for_every_layout():
    image = gradient_image()
    for a in (image, image.astype(np.float32), image[..., :1], image[..., 0], image[::2, ::3]):
        out = run("flip_lr(p=1.0)", a)
        assert out.shape == a.shape and out.dtype == a.dtype
        np.testing.assert_array_equal(out, a[:, ::-1])


def test_normalize_lookup_is_bit_equal_to_the_arithmetic():
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), np.uint8)
    for spec, mean, std in (
        ("normalize('imagenet')", pp.IMAGENET_MEAN, pp.IMAGENET_STD),
        ("normalize(0.5, 0.25)", (0.5,), (0.25,)),
    ):
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        for a in (image, image[:, ::-1], image[..., :1]):
            expected = ((a.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
            out = run(spec, a)
            assert out.dtype == np.float32 and out.shape == expected.shape
            np.testing.assert_array_equal(out, expected)


def test_value_range_maps_uint8_to_interval():
    image = np.array([[[0, 255, 51]]], np.uint8)
    out = run("value_range(-1, 1)", image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [-1.0, 1.0, -0.6], atol=1e-6)
    np.testing.assert_allclose(run("value_range(0, 1)", image)[0, 0], [0.0, 1.0, 0.2], atol=1e-6)


def test_normalize_uses_unit_scale_and_imagenet_preset():
    image = np.full((1, 1, 3), 255, np.uint8)
    out = run("normalize('imagenet')", image)
    expected = (1.0 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5)
    out = run("normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))", image)
    np.testing.assert_allclose(out, 1.0)
    with pytest.raises(ValueError, match="std"):
        pp.parse("normalize(0.5, 0)")


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="twice"):
        pp.register("resize")(lambda: None)
