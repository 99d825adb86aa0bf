"""The command line: a misspelt override fails with a clear message before any training starts."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "jaxcls.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_misspelt_override_is_a_clear_error(tmp_path):
    r = run_main("--config=configs/cnn.py", f"--workdir={tmp_path}", "--config.num_epoch=3")
    assert r.returncode != 0
    assert "num_epoch" in r.stderr
    assert not os.path.exists(tmp_path / "results.json")


def test_unknown_model_is_a_one_line_error(tmp_path):
    r = run_main("--config=configs/cnn.py", f"--workdir={tmp_path}", "--config.model.name=nope")
    assert r.returncode == 2
    assert "jaxcls: error:" in r.stderr and "cnn" in r.stderr
