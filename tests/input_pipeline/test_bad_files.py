"""A folder with the files real datasets contain: bad ones are skipped and listed, awkward ones
decode to the right pixels inside the pipeline, too many bad ones abort with a clear message."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import catalogue, pipeline

from .conftest import make_config, solid, write_image

RED, BLUE = (230, 20, 20), (20, 40, 230)


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    odd = root / "odd"
    plain = root / "plain"
    for i in range(5):
        write_image(plain / f"p{i}.jpg", solid(BLUE, (8, 8)), quality=95)
    # Bad files.
    os.makedirs(odd)
    (odd / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    (odd / "truncated.jpg").write_bytes(buf.getvalue()[:600])
    (odd / "page.jpg").write_text("<html>Forbidden</html>")
    # Awkward but good files, all 8x8 so the pipeline needs no resize.
    write_image(odd / "cmyk.jpg", Image.fromarray(solid(RED, (8, 8))).convert("CMYK"), quality=95)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (*RED, 255)  # Top half opaque red, bottom half transparent black.
    write_image(odd / "rgba.png", rgba)
    palette = Image.new("P", (8, 8))
    palette.putpalette([0, 0, 0, *RED] + [0] * (254 * 3))
    palette.putdata([1] * 32 + [0] * 32)
    write_image(odd / "palette.png", palette, transparency=0)
    write_image(odd / "gray16.png", np.full((8, 8), 65535, np.uint16))
    stored = np.zeros((8, 8, 3), np.uint8)
    stored[:] = BLUE
    stored[:3, :3] = RED  # Marker in the stored top-left corner.
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotate 90 degrees clockwise to display.
    write_image(odd / "exif.jpg", stored, quality=95, exif=exif.tobytes())
    return str(root)


BAD = {"odd/zero.jpg": "empty", "odd/truncated.jpg": "truncated", "odd/page.jpg": "not an image"}


def test_bad_files_abort_above_threshold_naming_them(messy_folder):
    config = make_config(f"folder:{messy_folder}", image_size=8)
    with pytest.raises(ValueError, match=r"3 of 13 files.*max_bad_fraction=0.01.*zero.jpg: empty"):
        pipeline.build_data(config, None)


def test_bad_files_are_skipped_listed_and_remembered(messy_folder, tmp_path):
    workdir = str(tmp_path / "work")
    config = make_config(
        f"folder:{messy_folder}",
        image_size=8,
        split=(1.0, 0.0, 0.0),
        max_bad_fraction=0.3,
        eval_pipeline="decode|value_range(0, 255)",
    )
    data = pipeline.build_data(config, workdir)
    assert {s["key"] for s in data.skipped} == set(BAD)
    for s in data.skipped:
        assert BAD[s["key"]] in s["reason"] and s["path"] == os.path.join(messy_folder, s["key"])
    train = data.manifests["train"]
    assert len(train) == 10 and not set(BAD) & set(train.keys)
    assert open(os.path.join(workdir, "splits", "skipped.csv")).read().count("\n") == 4
    # A resumed run reads the skipped list back and accepts the unchanged folder.
    again = pipeline.build_data(config, workdir)
    assert again.skipped == data.skipped and again.manifests["train"].keys == train.keys

    images = {}
    for batch in pipeline.eval_batches(data, "train", config, batch_size=4):
        for image, i, m in zip(batch["image"], batch["id"], batch["mask"]):
            if m:
                images[train.keys[i]] = image
    np.testing.assert_allclose(images["odd/cmyk.jpg"][4, 4], RED, atol=12)
    np.testing.assert_allclose(images["odd/rgba.png"][1, 1], RED, atol=1)
    np.testing.assert_allclose(images["odd/rgba.png"][6, 6], (255, 255, 255), atol=1)
    np.testing.assert_allclose(images["odd/palette.png"][1], np.tile(RED, (8, 1)), atol=1)
    np.testing.assert_allclose(images["odd/palette.png"][6], 255, atol=1)
    np.testing.assert_allclose(images["odd/gray16.png"], 255)
    exif = images["odd/exif.jpg"]
    assert exif[0, 7, 0] > 180 and exif[0, 7, 2] < 90  # Marker now top-right.
    assert exif[0, 0, 0] < 90 and exif[0, 0, 2] > 180
    np.testing.assert_allclose(images["plain/p0.jpg"][3, 3], BLUE, atol=6)

    # Training reads the same files without error (the bad ones are not in the splits).
    batch = next(iter(pipeline.train_dataset(data, config, batch_size=10, seed=0)))
    assert sorted(batch["id"].tolist()) == list(range(10))


def test_file_gone_bad_after_the_scan_names_the_file(messy_folder):
    config = make_config(
        f"folder:{messy_folder}", image_size=8, max_bad_fraction=0.3, split=(1.0, 0.0, 0.0)
    )
    data = pipeline.build_data(config, None)
    with open(os.path.join(messy_folder, "plain", "p0.jpg"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ValueError, match=r"plain/p0.jpg: not an image"):
        list(pipeline.eval_batches(data, "train", config, batch_size=4))


def test_catalogue_summarises_the_folder(messy_folder, tmp_path):
    (tmp_path / "messy" / "plain" / "notes.txt").write_text("x")
    rows, summary = catalogue.catalogue(messy_folder)
    assert len(rows) == summary["num_files"] == 13
    assert summary["class_counts"] == {"odd": 8, "plain": 5}
    assert summary["imbalance"] == pytest.approx(8 / 5)
    assert summary["num_bad"] == 3
    assert {os.path.basename(b["path"]) for b in summary["bad"]} == {
        "zero.jpg",
        "truncated.jpg",
        "page.jpg",
    }
    assert summary["formats"]["JPEG"] == 7 and summary["formats"]["PNG"] == 3
    assert summary["modes"]["CMYK"] == 1 and summary["modes"]["RGBA"] == 1
    assert summary["rotated_exif"] == 1
    assert summary["width"] == {"min": 8, "median": 8.0, "max": 8}
    assert summary["other_files"] == 1
    by_key = {r["key"]: r for r in rows}
    assert by_key["odd/gray16.png"]["mode"].startswith("I") and by_key["odd/gray16.png"]["ok"]
    assert by_key["odd/zero.jpg"]["reason"] == "empty file"
