"""Golden decodes of the awkward files real datasets contain, and one error type for bad files."""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from input_pipeline import decode
from input_pipeline.decode import DecodeError


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_rgb_jpeg_and_png_decode_to_uint8_rgb():
    array = np.zeros((8, 10, 3), np.uint8)
    array[..., 0] = 200
    array[..., 2] = 50
    for fmt in ("PNG", "JPEG"):
        out = decode.decode_image(encode(Image.fromarray(array), fmt, quality=95))
        assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
        np.testing.assert_allclose(out, array, atol=3)


def test_exif_orientation_is_applied():
    # Stored landscape 20 wide x 10 high; red marker in the stored top-left corner.
    stored = np.zeros((10, 20, 3), np.uint8)
    stored[:] = (0, 0, 255)
    stored[:4, :4] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "Rotate 90 CW to display".
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    out = decode.decode_image(data)
    assert out.shape == (20, 10, 3)  # Upright: portrait.
    # Rotating 90 degrees clockwise moves the stored top-left corner to the top-right.
    assert out[1, 8, 0] > 200 and out[1, 8, 2] < 60
    assert out[1, 1, 0] < 60 and out[1, 1, 2] > 200


def test_rgba_composited_on_white_not_on_stored_colour():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # Opaque red.
    rgba[0, 1] = (0, 0, 0, 0)  # Transparent "black": must become background white.
    rgba[0, 2] = (0, 0, 0, 128)  # Half-transparent black over white: mid grey.
    rgba[0, 3] = (10, 200, 30, 0)  # Transparent green: also white.
    out = decode.decode_image(encode(Image.fromarray(rgba), "PNG"))
    np.testing.assert_array_equal(out[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(out[0, 1], (255, 255, 255))
    np.testing.assert_allclose(out[0, 2], (127, 127, 127), atol=1)
    np.testing.assert_array_equal(out[0, 3], (255, 255, 255))
    black_bg = decode.decode_image(encode(Image.fromarray(rgba), "PNG"), background=(0, 0, 0))
    np.testing.assert_array_equal(black_bg[0, 3], (0, 0, 0))


def test_palette_with_transparency_and_la():
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    palette_image.putdata([0, 1, 2])
    data = encode(palette_image, "PNG", transparency=0)  # Index 0 (black) is transparent.
    out = decode.decode_image(data)
    np.testing.assert_array_equal(out[0], [(255, 255, 255), (255, 0, 0), (0, 255, 0)])
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], np.uint8))
    out = decode.decode_image(encode(la, "PNG"))
    np.testing.assert_array_equal(out[0], [(50, 50, 50), (255, 255, 255)])


def test_cmyk_jpeg_gives_right_colours():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = (230, 20, 20)
    rgb[:, 4:] = (20, 20, 230)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    out = decode.decode_image(encode(cmyk, "JPEG", quality=95))
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out[:, 1], np.tile([230, 20, 20], (8, 1)), atol=12)
    np.testing.assert_allclose(out[:, 6], np.tile([20, 20, 230], (8, 1)), atol=12)


def test_16bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode.decode_image(data)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb_png(tmp_path):
    bgr = np.zeros((2, 2, 3), np.uint16)
    bgr[:] = (65535, 32896, 0)  # OpenCV order: B, G, R.
    path = str(tmp_path / "rgb16.png")
    cv2.imwrite(path, bgr)
    out = decode.decode_file(path)
    np.testing.assert_array_equal(out[0, 0], (0, 128, 255))


def test_grayscale_and_bilevel_become_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = decode.decode_image(encode(Image.fromarray(gray), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    np.testing.assert_array_equal(decode.decode_image(encode(bilevel, "PNG"))[0, :, 0], [0, 255])


def _jpeg_bytes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    return encode(Image.fromarray(image), "JPEG", quality=90)


def _png_bytes():
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    return encode(Image.fromarray(image), "PNG")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"<html><body>404 not found</body></html>", "not an image"),
        (_jpeg_bytes()[:300], "corrupt or truncated"),
        (_png_bytes()[: len(_png_bytes()) // 2], "corrupt or truncated"),
    ],
)
def test_bad_inputs_raise_decode_error_only(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode.decode_image(data)


def test_pixel_limit_refuses_bombs_before_decoding():
    data = encode(Image.new("L", (30, 30)), "PNG")
    with pytest.raises(DecodeError, match="too many pixels"):
        decode.decode_image(data, max_pixels=100)
    # A tiny PNG whose header claims 100k x 100k pixels: refused from the header alone.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb = data[:8] + chunk + data[8 + len(chunk) :]
    with pytest.raises(DecodeError, match="too many pixels"):
        decode.decode_image(bomb)


def test_fuzzed_files_raise_only_decode_error():
    """Random byte flips, truncations and insertions in JPEG and PNG: no other exception type."""
    rng = np.random.default_rng(1)
    seeds = [_jpeg_bytes(), encode(Image.fromarray(np.full((16, 16, 4), 90, np.uint8)), "PNG")]
    ok = bad = 0
    for trial in range(300):
        data = bytearray(seeds[trial % 2])
        for _ in range(int(rng.integers(1, 8))):
            kind = rng.integers(3)
            pos = int(rng.integers(len(data)))
            if kind == 0:
                data[pos] = int(rng.integers(256))
            elif kind == 1:
                del data[pos:]
                if not data:
                    break
            else:
                data[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 16))).tolist())
        try:
            out = decode.decode_image(bytes(data))
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            ok += 1
        except DecodeError:
            bad += 1
    assert bad > 0  # The mutations do break files.


def test_read_file_errors_are_decode_errors(tmp_path):
    with pytest.raises(DecodeError, match="cannot read"):
        decode.decode_file(str(tmp_path / "missing.jpg"))
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 100)
    with pytest.raises(DecodeError, match="too large"):
        decode.read_file(str(big), max_bytes=10)
    assert decode.check_file(str(big)) == "not an image (format not recognised)"


def test_to_rgb_array_for_in_memory_sources():
    np.testing.assert_array_equal(decode.to_rgb_array(np.full((2, 2), 7, np.uint8))[..., 1], 7)
    floats = decode.to_rgb_array(np.ones((2, 2, 3), np.float32))
    assert floats.dtype == np.uint8 and floats.max() == 255
    with pytest.raises(DecodeError):
        decode.to_rgb_array(np.zeros((2, 2, 5)))


def pillow_reference(data: bytes, draft: int = 0) -> np.ndarray:
    """What Pillow alone gives: its reduced decode (Image.draft) when asked, the EXIF orientation
    (ImageOps.exif_transpose), RGB."""
    from PIL import ImageOps

    image = Image.open(io.BytesIO(data))
    keep = int(np.ceil(decode.DRAFT_MARGIN * draft))
    if draft and min(image.size) >= 2 * keep:
        image.draft("RGB", (keep, keep))
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_libjpeg_turbo_path_gives_pillows_pixels(orientation):
    from skimage import data as skdata

    photo = skdata.chelsea()  # 300x451, a real photo
    exif = Image.Exif()
    exif[0x0112] = orientation
    cases = [
        encode(Image.fromarray(photo), "JPEG", quality=q, subsampling=s, exif=exif.tobytes())
        for q, s in ((75, 2), (95, 0), (90, 1))
    ]
    cases.append(encode(Image.fromarray(photo), "JPEG", progressive=True, exif=exif.tobytes()))
    cases.append(encode(Image.fromarray(photo[..., 1]), "JPEG", exif=exif.tobytes()))  # grey
    for data in cases:
        # The fast path is taken (Pillow only decides for CMYK and for files libjpeg complains of).
        w, h = Image.open(io.BytesIO(data)).size
        assert decode._decode_jpeg_turbo(data, w, h, 1, orientation) is not None
        for draft in (0, 32, 50, 100):  # no reduction, 1/4, 1/2, none (300 < 2 x 150)
            out = decode.decode_image(data, draft=draft)
            np.testing.assert_array_equal(out, pillow_reference(data, draft))
            assert out.flags.c_contiguous


def test_pillow_decides_for_damaged_jpegs():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)
    whole = encode(Image.fromarray(rgb), "JPEG")
    cut = whole[: len(whole) * 2 // 3]
    assert decode._decode_jpeg_turbo(cut, 50, 40, 1, 1) is None
    with pytest.raises(DecodeError, match="corrupt or truncated"):
        decode.decode_image(cut)
