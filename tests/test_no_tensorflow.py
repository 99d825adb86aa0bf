"""Training where TensorFlow is not installed (a GPU image with JAX preinstalled, a Python that
TensorFlow has no wheels for): the run trains, evaluates and writes its results, with one warning
that there are no TensorBoard event files (clu writes them through TensorFlow)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs jaxcls.main with TensorFlow invisible to Python's import system, as if not installed:
# `import tensorflow` fails and importlib.util.find_spec('tensorflow') is None.
WITHOUT_TENSORFLOW = """
import runpy, sys

class Hide:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

sys.meta_path[:] = [Hide(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
runpy.run_module("jaxcls.main", run_name="__main__", alter_sys=True)
"""


def test_a_run_without_tensorflow_trains_and_says_there_is_no_tensorboard(tmp_path):
    workdir = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_TENSORFLOW,
            "--config=configs/cnn.py",
            f"--workdir={workdir}",
            "--config.model.name=cnn_small",
            "--config.data.image_size=16",
            "--config.num_epochs=1",
            "--config.batch_size=32",
            "--config.efficiency.enabled=False",
        ],  # fmt: skip
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # Said once (the training loop's writer and the report's images share the opener), and the
    # report does not fail over it either.
    assert r.stderr.count("No TensorBoard event files for this run") == 1
    assert "could not write report images" not in r.stderr
    assert "pip install tensorflow-cpu" in r.stderr
    assert "Traceback" not in r.stderr
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert 0.0 <= results["splits"]["test"]["accuracy"] <= 1.0
    assert results["splits"]["test"]["count"] > 0
    assert not (workdir / "tensorboard").exists()
