"""tools/to_array_record.py and the 'array_record:DIR' source: the same examples, splits, batches
and exact resume as the folder it was written from, and per-host shards of the same global batch."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from input_pipeline import pipeline
from jaxcls.trainer import parallel
from jaxcls.trainer import run as train
from tests.input_pipeline.conftest import make_config
from tests.multihost import common
from tests.small import small_config
from tools import to_array_record

BATCH = 8


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("array_record")
    data = common.make_image_folder(str(tmp / "data"), per_class=20)
    with open(os.path.join(data, "class_1", "broken.png"), "wb") as f:
        f.write(b"not an image")
    out = str(tmp / "packed")
    r = subprocess.run(
        [sys.executable, "tools/to_array_record.py", data, f"--out={out}", "--shard_size=25"],
        cwd=common.ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return data, out, r.stdout


def test_tool_writes_shards_and_lists_the_bad_file(packed):
    data, out, stdout = packed
    assert "skipped" in stdout and "broken.png" in stdout
    assert sorted(n for n in os.listdir(out) if n.endswith(".array_record")) == [
        "images-00000-of-00003.array_record",
        "images-00001-of-00003.array_record",
        "images-00002-of-00003.array_record",
    ]
    with open(os.path.join(out, "skipped.csv")) as f:
        assert "class_1/broken.png" in f.read()


def test_tool_user_errors_are_one_line(packed, tmp_path):
    _, out, _ = packed
    for args, expected in (
        ([str(tmp_path / "missing")], "No such file or directory"),
        ([str(packed[0])], "not empty"),  # --out is the existing packed folder
    ):
        r = subprocess.run(
            [sys.executable, "tools/to_array_record.py", *args, f"--out={out}"],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and expected in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def _data(spec):
    config = make_config(spec, split=(0.8, 0.1, 0.1), num_threads=1, max_bad_fraction=0.05)
    return pipeline.build_data(config, None), config


def _batches(data, config, n, *, shard=(0, 1), batch=BATCH, state=None):
    ds = pipeline.train_dataset(
        data, config, batch_size=batch, seed=3, shard_index=shard[0], shard_count=shard[1]
    )
    it = iter(ds)
    if state is not None:
        it.set_state(state)
    return [next(it) for _ in range(n)], it.get_state()


def test_same_splits_and_batches_as_the_folder(packed):
    data_dir, out, _ = packed
    folder, config = _data(f"folder:{data_dir}")
    packed_data, packed_config = _data(f"array_record:{out}")
    assert packed_data.class_names == folder.class_names
    for split in ("train", "val", "test"):
        assert packed_data.manifests[split].keys == folder.manifests[split].keys
        np.testing.assert_array_equal(
            packed_data.manifests[split].labels, folder.manifests[split].labels
        )
    a, _ = _batches(folder, config, 3)
    b, _ = _batches(packed_data, packed_config, 3)
    for x, y in zip(a, b):
        for k in ("image", "label", "id"):
            np.testing.assert_array_equal(x[k], y[k])


def test_resume_and_per_host_shards(packed):
    _, out, _ = packed
    data, config = _data(f"array_record:{out}")
    straight, _ = _batches(data, config, 7)
    first, state = _batches(data, config, 3)
    rest, _ = _batches(data, config, 4, state=state)
    for x, y in zip(straight, first + rest):  # crosses the epoch boundary (6 batches of 8)
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["id"], y["id"])
    # Two hosts with 4 each read disjoint halves of the same global batches of 8; a state saved
    # by one host count restores on the other when the global batch is the same.
    hosts = [_batches(data, config, 3, shard=(i, 2), batch=BATCH // 2) for i in range(2)]
    for step in range(3):
        a, b = (hosts[i][0][step]["id"] for i in range(2))
        assert not set(a) & set(b)
        assert sorted([*a, *b]) == sorted(straight[step]["id"])
    resumed, _ = _batches(data, config, 4, state=hosts[0][1])
    for x, y in zip(rest, resumed):
        np.testing.assert_array_equal(x["id"], y["id"])
    with pytest.raises(ValueError, match="batch_size"):  # another global batch is refused
        _batches(data, config, 1, batch=BATCH // 2, state=state)


def _final_params(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    step = max(int(d) for d in os.listdir(latest) if d.isdigit())
    with ocp.StandardCheckpointer() as c:
        return c.restore(os.path.join(latest, str(step), "state"))["params"]


def test_trains_and_resumes_exactly_after_preemption(packed, tmp_path, monkeypatch):
    _, out, _ = packed
    config = small_config(
        num_epochs=2,
        dataset=f"array_record:{out}",
        batch_size=16,
        **{"data.split": (0.8, 0.1, 0.1)},
    )
    ref = train.run(config, str(tmp_path / "ref"))
    assert ref["steps_run"] == 6 and ref["dataset"] == f"array_record:{out}"

    original = parallel.DevicePrefetcher.__next__
    drawn = {"n": 0}

    def next_and_signal(self):
        item = original(self)
        drawn["n"] += 1
        if drawn["n"] == 2:  # SIGTERM while step 2 runs: checkpoint at 2, exit.
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", next_and_signal)
    with pytest.raises(train.Preempted):
        train.run(config, str(tmp_path / "cut"))
    monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", original)
    resumed = train.run(config, str(tmp_path / "cut"))
    assert [h["train/loss"] for h in resumed["history"]] == [
        h["train/loss"] for h in ref["history"]
    ]
    jax.tree.map(
        np.testing.assert_array_equal,
        _final_params(str(tmp_path / "cut")),
        _final_params(str(tmp_path / "ref")),
    )


def test_convert_rejects_a_file_that_is_not_csv(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="neither a folder"):
        to_array_record.source_spec(str(path))
