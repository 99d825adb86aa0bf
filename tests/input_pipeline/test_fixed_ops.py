"""Deterministic preprocessing ops (fixed Gaussian blur, CLAHE, resize-pad): alone, in an eval
pipeline run by grain, and in tools/preprocess.py."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from input_pipeline import decode, pipeline, pp

from .conftest import make_config, write_image

FIXED = "decode|resize_pad(16)|clahe(2.0, 4)|blur(1.0)"


def photo(h=12, w=20, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([200 * x + 30, 180 * y + 40, 120 - 80 * x * y], -1)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def test_blur_is_a_fixed_gaussian_and_needs_no_rng():
    image = photo()
    prep = pp.parse("blur(1.5)")
    assert not prep.is_random
    want = cv2.GaussianBlur(image, (11, 11), sigmaX=1.5, sigmaY=1.5)  # +-3 sigma, reflected.
    np.testing.assert_array_equal(prep(image), want)
    np.testing.assert_array_equal(
        pp.parse("blur(1.5, kernel=3)")(image), cv2.GaussianBlur(image, (3, 3), 1.5, sigmaY=1.5)
    )
    assert (
        np.abs(np.diff(prep(image).astype(int), axis=1)).mean()
        < np.abs(np.diff(image.astype(int), axis=1)).mean()
    )  # Smoother.
    # gaussian_blur with a fixed sigma and p=1 is the same deterministic op; otherwise random.
    fixed = pp.parse("gaussian_blur(1.5, p=1.0)")
    assert not fixed.is_random
    np.testing.assert_array_equal(fixed(image), want)
    assert pp.parse("gaussian_blur(1.5)").is_random and pp.parse("gaussian_blur").is_random
    for bad in ("blur(0)", "blur(1.0, kernel=4)"):
        with pytest.raises(ValueError, match="bad arguments"):
            pp.parse(bad)


def test_fixed_ops_in_the_grain_eval_pipeline(tmp_path):
    """resize_pad, clahe and blur in config.data.eval_pipeline: the batches grain yields equal the
    ops applied to each decoded file directly."""
    for c, name in enumerate(("a", "b")):
        for i in range(3):
            write_image(tmp_path / "d" / name / f"{i}.png", photo(12 + 4 * c, 20, seed=10 * c + i))
    config = make_config(
        f"folder:{tmp_path}/d",
        split=(1.0, 0.0, 0.0),
        scan=False,
        eval_pipeline=FIXED + "|value_range(0, 1)",
    )
    data = pipeline.build_data(config, None)
    batch = next(pipeline.eval_batches(data, "train", config, batch_size=6))
    manifest = data.manifests["train"]
    prep = pp.parse(FIXED)
    for image, key in zip(batch["image"], manifest.keys):
        want = prep(decode.read_file(os.path.join(tmp_path, "d", key))) / 255.0
        np.testing.assert_allclose(image, want, atol=1e-6)
    with pytest.raises(ValueError, match=r"random ops \['gaussian_blur\(1.0\)'\]"):
        pipeline.build_data(
            make_config(f"folder:{tmp_path}/d", eval_pipeline=FIXED + "|gaussian_blur(1.0)"), None
        )


def test_preprocess_tool_applies_the_fixed_ops_and_refuses_random_ones(tmp_path, capsys):
    from tools import preprocess as tool

    write_image(tmp_path / "src" / "cat" / "x.png", photo(30, 18, seed=3))
    write_image(tmp_path / "src" / "dog" / "y.png", photo(18, 30, seed=4))
    spec = "decode|resize_pad(16)|clahe(2.0, 4)|gaussian_blur(1.0, p=1)"
    args = [str(tmp_path / "src"), f"--out={tmp_path}/out", "--format=png", f"--pipeline={spec}"]
    assert tool.main(args) == 0
    prep = pp.parse(spec)
    for rel in ("cat/x.png", "dog/y.png"):
        got = np.asarray(Image.open(tmp_path / "out" / rel))
        np.testing.assert_array_equal(got, prep(decode.read_file(str(tmp_path / "src" / rel))))
    capsys.readouterr()
    args[-1] = "--pipeline=decode|resize_pad(16)|gaussian_blur(1.0)"
    assert tool.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "random ops ['gaussian_blur(1.0)']" in err
