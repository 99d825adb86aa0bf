"""A write that fails half-way (a full disk, a kill) never leaves a truncated file that a rerun or
a training run would read: the target keeps its old contents and no temporary file remains. Here
for the primitive and for the data tools' outputs (a preprocessed image, the catalogue files)."""

import errno
import os

import numpy as np
import pytest
from PIL import Image

from input_pipeline import catalogue_report, pp, preprocess
from jaxcls import files


def full_disk_after(nbytes):
    """A write function that stores ``nbytes`` and then fails as a full disk does."""

    def write(f, data):
        f.write(data[:nbytes])
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')
    with pytest.raises(OSError, match="No space"), files.atomic_open(str(target)) as f:
        full_disk_after(5)(f, '{"new": "a long half-written value"}')
    assert target.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["results.json"]


def test_preprocess_never_leaves_a_truncated_image(tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(src)
    out = tmp_path / "out" / "cls"
    dst = str(out / "a.jpg")
    prep = pp.parse("decode|resize_pad(16)")
    assert preprocess.convert_one(str(src), dst, prep, "jpeg", 90) is None
    good = open(dst, "rb").read()
    assert Image.open(dst).size == (16, 16)

    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):  # the disk fills while the JPEG is written
        real_save(self, fp, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        preprocess.convert_one(str(src), dst, prep, "jpeg", 50)  # a rerun rewriting it
    assert open(dst, "rb").read() == good
    assert os.listdir(out) == ["a.jpg"]


def test_catalogue_table_write_failure_keeps_the_previous_table(tmp_path, monkeypatch):
    path = str(tmp_path / "catalogue.csv")
    rows = [{**{c: 1 for c in catalogue_report.COLUMNS}, "mode": "RGB"}]
    catalogue_report.write_table(rows, path)
    before = open(path).read()
    calls = []

    def channels_then_full_disk(mode):  # the disk fills after the first row of the rewrite
        calls.append(mode)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return 3

    monkeypatch.setattr(catalogue_report, "channels", channels_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        catalogue_report.write_table(rows * 3, path)
    assert open(path).read() == before
    assert os.listdir(tmp_path) == ["catalogue.csv"]
