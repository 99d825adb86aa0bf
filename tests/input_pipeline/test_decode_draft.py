"""Reduced-size JPEG decoding (``decode(draft=S)``): photos much larger than the target decode at
a DCT scale of 1/2..1/8, and after the pipeline's resize the pixels match a full decode within a
small tolerance; where no reduction applies the output is the full decode, pixel for pixel."""

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from input_pipeline import decode, pipeline
from input_pipeline.pp import ops_image, registry


def jpeg(array, quality=90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo(name, hw):
    image = getattr(skdata, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("hw", [(375, 500), (768, 1024)])
@pytest.mark.parametrize("size", [32, 64, 128, 224])
def test_reduced_decode_then_resize_matches_full_decode(name, hw, size):
    raw = jpeg(photo(name, hw))
    full = decode.decode_image(raw)
    drafted = decode.decode_image(raw, draft=size)
    keep = np.ceil(decode.DRAFT_MARGIN * size)
    assert min(drafted.shape[:2]) >= keep  # Enough pixels left for the resize to average.
    if min(hw) >= 2 * keep:  # Reduced: by a power of two, at least 2.
        assert drafted.shape[0] <= -(-full.shape[0] // 2)  # (libjpeg rounds up)
    else:
        np.testing.assert_array_equal(drafted, full)
    a = ops_image.resize_to(full, (size, size)).astype(np.int16)
    b = ops_image.resize_to(drafted, (size, size)).astype(np.int16)
    diff = np.abs(a - b)
    assert diff.mean() < 2.0, diff.mean()
    assert np.percentile(diff, 99) <= 25


def test_no_reduction_is_pixel_identical():
    small = jpeg(photo("chelsea", (300, 451)))
    np.testing.assert_array_equal(decode.decode_image(small, draft=224), decode.decode_image(small))
    png = io.BytesIO()
    Image.fromarray(photo("coffee", (400, 600))).save(png, "PNG")
    raw = png.getvalue()
    np.testing.assert_array_equal(decode.decode_image(raw, draft=32), decode.decode_image(raw))


def test_exif_rotated_jpeg_stays_upright_when_reduced():
    image = photo("astronaut", (768, 1024))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotate 90 CW to display.
    Image.fromarray(image).save(buf, "JPEG", quality=90, exif=exif)
    full = decode.decode_image(buf.getvalue())
    drafted = decode.decode_image(buf.getvalue(), draft=64)
    assert full.shape[:2] == (1024, 768)
    assert drafted.shape[0] > drafted.shape[1]  # Upright after the reduction too.
    a = ops_image.resize_to(full, (64, 64)).astype(np.int16)
    b = ops_image.resize_to(drafted, (64, 64)).astype(np.int16)
    assert np.abs(a - b).mean() < 2.0


def test_default_pipelines_use_the_draft_and_parse():
    train, evaluation = pipeline.default_pipelines((64, 64))
    assert train.startswith("decode(draft=64)|resize(64)")
    assert evaluation.startswith("decode(draft=64)|resize(64)")
    out = registry.parse(evaluation)(jpeg(photo("coffee", (768, 1024))))
    assert out.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="draft"):
        registry.parse("decode(draft=-1)")
