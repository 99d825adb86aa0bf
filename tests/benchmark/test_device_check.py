"""tools/device_check.py at smoke size on CPU: the rows, the table and the JSON a user gets on a
GPU or TPU (there with MFU; on CPU the peak is unknown, so none), and one-line errors for an
unknown model and a batch the devices cannot split. The tests' 8 CPU devices are JAX's devices."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_check(tmp_path, *flags):
    return subprocess.run(
        [sys.executable, "tools/device_check.py", f"--out={tmp_path}", *flags],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_device_check_measures_each_model_and_writes_its_table(tmp_path):
    r = run_check(
        tmp_path, "--models=cnn_small", "--batch=8", "--size=16", "--steps=2", "--rounds=2",
        "--no_timm", "--no_train_run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cnn_small round 2/2: jaxcls" in r.stdout
    with open(tmp_path / "device_check.json") as f:
        (row,) = json.load(f)["rows"]
    assert row["model"] == "cnn_small" and row["platform"] == "cpu"
    assert row["train_img_s"] > 0 and row["first_step_s"] > 0
    assert row["gflops"] > 0  # counted on the CPU backend, as on any accelerator
    assert row["mfu"] is None  # no peak FLOP/s known for a CPU: none rather than a guess
    table = (tmp_path / "device_check.md").read_text()
    assert "| cnn_small |" in table and "batch 8, 16 px" in table


def test_device_check_needs_a_batch_that_splits_over_the_devices(tmp_path):
    r = run_check(tmp_path, "--models=cnn_small", "--batch=9", "--no_timm", "--no_train_run")
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "--batch=9" in r.stderr and "multiple of" in r.stderr


def test_device_check_rejects_an_unknown_model_in_one_line(tmp_path):
    r = run_check(tmp_path, "--models=resnet50,no_such_model")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "device_check: error:" in r.stderr and "no_such_model" in r.stderr
