"""A gs:// workdir: results, splits, reports and the runs table go through one filesystem layer
(etils.epath), never through os.path/open on the URL.

etils' own test backend (`epath.testing.mock_epath`) serves gs://bucket/... from a local folder;
the test runs in an empty current folder, so any code that handed the URL to the OS instead
(``open('gs://b/x')``, ``os.makedirs``) would fail or leave a ``gs:`` folder behind there.
"""

import csv
import json
import os
from unittest import mock

import numpy as np
import pytest
from etils import epath
from etils.epath import gpath
from etils.epath import testing as epath_testing

from input_pipeline import pipeline
from jaxcls import files
from jaxcls.reporting import report, runs
from tests.input_pipeline.conftest import make_config
from tests.multihost import common
from tests.test_report import CLASSES, HISTORY, _config, _outputs


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """gs://... served from ``tmp_path/gcs``; yields that folder. The current folder is empty."""
    root = tmp_path / "gcs"
    root.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def local(p):
        s = os.fspath(p)
        return os.path.join(root, s[len("gs://") :]) if s.startswith("gs://") else s

    def one(original, p, *args, **kwargs):
        return original(local(p), *args, **kwargs)

    def two(original, p, dst, *args, **kwargs):
        return original(local(p), local(dst), *args, **kwargs)

    def open_(original, p, mode, *args, **kwargs):  # An object store has no folders to make.
        if "w" in mode or "a" in mode:
            os.makedirs(os.path.dirname(local(p)), exist_ok=True)
        return original(local(p), mode, *args, **kwargs)

    fns = {n: one for n in ("exists", "isdir", "listdir", "makedirs", "mkdir", "remove")}
    fns["open"] = open_
    fns.update({n: one for n in ("rmtree", "stat", "walk")})
    fns.update({n: two for n in ("rename", "replace", "copy")})
    # With TensorFlow installed epath would send gs:// to tf.io.gfile (real GCS): use the mock.
    with (
        mock.patch.object(gpath, "_is_tf_installed", lambda: False),
        epath_testing.mock_epath(**fns),
    ):
        yield root
    assert os.listdir(cwd) == [], "something wrote the URL as a local path"


def test_results_json_and_text_at_a_url(bucket):
    assert files.absolute("gs://b/run") == "gs://b/run" and files.is_url("gs://b/run")
    files.write_json("gs://b/run/results.json", {"x": np.float32(1.5)})
    assert files.read_json("gs://b/run/results.json") == {"x": 1.5}
    assert json.load(open(bucket / "b" / "run" / "results.json")) == {"x": 1.5}
    assert files.read_json("gs://b/run/missing.json", default={}) == {}
    files.write_text("gs://b/run/notes.txt", "hello\n")
    assert (bucket / "b" / "run" / "notes.txt").read_text() == "hello\n"
    assert epath.Path("gs://b/run/notes.txt").exists()


def test_splits_are_written_and_read_back_at_a_url(bucket, tmp_path):
    data = common.make_image_folder(str(tmp_path / "data"), per_class=10)
    config = make_config(f"folder:{data}", split=(0.6, 0.2, 0.2))
    first = pipeline.build_data(config, "gs://b/run")
    assert sorted(os.listdir(bucket / "b" / "run" / "splits")) == [
        "skipped.csv",
        "test.csv",
        "train.csv",
        "unused.csv",
        "val.csv",
    ]
    again = pipeline.build_data(config, "gs://b/run")  # a resume: the splits are read back
    for split in ("train", "val", "test"):
        assert again.manifests[split].keys == first.manifests[split].keys


def test_reports_and_runs_table_at_a_url(bucket):
    outputs = {"val": _outputs(1, 30), "test": _outputs(2, 30)}
    results = {"model": "cnn_small", "steps_run": 40, "splits": {}}
    report.write_reports(
        "gs://b/runs/r1", _config(), CLASSES, outputs, results, HISTORY,
        load_image=lambda split, i: np.zeros((8, 8, 3), np.uint8),
    )  # fmt: skip
    run = bucket / "b" / "runs" / "r1"
    assert (run / "classification_report.txt").read_text().strip()
    assert results["report"]["plots"] and all(
        (run / p).read_bytes().startswith(b"\x89PNG") for p in results["report"]["plots"]
    )
    # A second row: an object store cannot append, so the table is rewritten whole.
    runs.append_row("gs://b/runs/runs.csv", {"run_id": "r2", "workdir": "gs://b/runs/r2"})
    with open(bucket / "b" / "runs" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["workdir"] for r in rows] == ["gs://b/runs/r1", "gs://b/runs/r2"]
    assert rows[0]["model"] == "cnn_small" and rows[1]["model"] == ""
