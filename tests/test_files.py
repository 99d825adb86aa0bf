"""Sizes on disk as reports, exports and the benchmarks give them (`jaxcls.files.size_bytes`)."""

from __future__ import annotations

import os

from jaxcls import files


def test_size_of_a_file_a_folder_and_nothing_else(tmp_path):
    (tmp_path / "ckpt" / "d").mkdir(parents=True)
    (tmp_path / "ckpt" / "meta.json").write_bytes(b"x" * 7)
    (tmp_path / "ckpt" / "d" / "shard").write_bytes(b"x" * 1000)
    (tmp_path / "model.onnx").write_bytes(b"x" * 33)
    # A broken link has no size: it is left out instead of raising.
    os.symlink(tmp_path / "gone", tmp_path / "ckpt" / "d" / "link")
    assert files.size_bytes(str(tmp_path / "ckpt")) == 1007
    assert files.size_bytes(str(tmp_path / "model.onnx")) == 33
    assert files.size_bytes(str(tmp_path)) == 1040
    assert files.size_bytes(str(tmp_path / "missing")) == 0
    listed = files.files_under(p for p in (str(tmp_path / "ckpt"), str(tmp_path / "model.onnx")))
    assert [os.path.relpath(p, tmp_path) for p in listed] == [
        os.path.join("ckpt", "meta.json"),
        os.path.join("ckpt", "d", "shard"),
        "model.onnx",
    ]
