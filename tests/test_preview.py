"""tools/preview.py: the raw-vs-processed grid of a dataset, seeded; user errors are one line."""

import numpy as np
import pytest
from PIL import Image

from input_pipeline import preview
from tests.input_pipeline.conftest import write_image
from tools import preview as tool

PIPELINE = "decode|resize_pad(16)|clahe(2.0, 4)|blur(1.0)|rotate(20)|value_range(-1, 1)"


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        for i in range(5):
            h, w = rng.integers(10, 30, 2)
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            write_image(tmp_path / "data" / name / f"{i}.png", image)
    (tmp_path / "data" / "dog" / "broken.jpg").write_bytes(b"not an image")
    return str(tmp_path / "data")


def test_preview_writes_a_seeded_grid_of_raw_and_processed(folder, tmp_path, capsys):
    out = str(tmp_path / "grid.png")
    assert tool.main([folder, f"--pipeline={PIPELINE}", f"--out={out}", "--n=6", "--seed=3"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 6 examples")
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape[0] > 100 and grid.shape[1] > 600 and grid.std() > 10  # Drawn, not blank.
    # The same seed draws the same examples and the same (augmented) picture; another seed not.
    again = preview.preview(folder, PIPELINE, str(tmp_path / "again.png"), n=6, seed=3)
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "again.png").convert("RGB")), grid
    )
    assert len(set(again["examples"])) == 6
    assert all(s in ((16, 16, 3), None) for s in again["shapes"])  # None: the broken file.
    other = preview.preview(folder, PIPELINE, str(tmp_path / "other.png"), n=6, seed=4)
    assert other["examples"] != again["examples"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["{folder}", "--pipeline=decode|resize_padd(16)"],
            "unknown preprocessing op 'resize_padd'",
        ),
        (["{folder}", "--pipeline=decode|resize(16"], "cannot parse preprocessing op"),
        (["{folder}", "--pipeline=resize(16)"], "must start with decode"),
        (["{tmp}/missing", "--pipeline=decode"], "dataset folder does not exist"),
    ],
)
def test_preview_user_errors_are_one_line_and_exit_2(folder, tmp_path, capsys, args, message):
    args = [a.format(folder=folder, tmp=tmp_path) for a in args] + [f"--out={tmp_path}/g.png"]
    assert tool.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("preview: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "g.png").exists()
