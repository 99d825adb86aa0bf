"""Checkpoints record the jaxcls version and the model's arguments; resuming one written by an
incompatible version, or into another model, says what differs before any array is read."""

import importlib.metadata
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.trainer import compat, setup
from jaxcls.trainer import run as train
from tests.reliability.conftest import ROOT, error_lines, run_main
from tests.small import small_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir with one checkpoint written by the trainer's own code (no training needed)."""
    workdir = str(tmp_path_factory.mktemp("versions") / "run")
    the_run, state = setup.setup_run(small_config(num_epochs=1), workdir)
    the_run.checkpoints.save(1, state, None, the_run.meta([]))
    the_run.checkpoints.close()
    return workdir


def newest_meta_file(workdir):
    step_dir = ckpt_lib.find_step_dir(os.path.join(workdir, "checkpoints", "latest"))
    return os.path.join(step_dir, "meta", "metadata")


def test_checkpoint_records_version_and_model_arguments(trained):
    meta = json.load(open(newest_meta_file(trained)))
    assert meta["jaxcls_version"] == importlib.metadata.version("jaxcls")
    assert meta["checkpoint_format"] == compat.CHECKPOINT_FORMAT
    assert meta["model"] == "cnn_small" and isinstance(meta["model_kwargs"], dict)


def test_resuming_into_another_model_is_one_line_naming_the_difference(trained):
    done = run_main(trained, "--config.model.name=cnn")
    assert done.returncode == 2, done.stderr[-3000:]
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "model: 'cnn_small' saved, now 'cnn'" in errors[0], errors
    assert "Traceback" not in done.stderr and "shape" not in errors[0].lower()


def test_a_checkpoint_of_another_format_is_refused_naming_both_versions(trained, tmp_path):
    path = newest_meta_file(trained)
    original = open(path).read()
    meta = json.loads(original)
    meta.update(checkpoint_format=compat.CHECKPOINT_FORMAT + 1, jaxcls_version="9.0.0")
    try:
        with open(path, "w") as f:
            json.dump(meta, f)
        with pytest.raises(
            ValueError, match=r"format 2 \(written by jaxcls 9\.0\.0\).*reads format 1"
        ):
            train.run(small_config(num_epochs=1, **{"efficiency.enabled": False}), trained)
    finally:
        with open(path, "w") as f:
            f.write(original)


def test_differences_name_each_model_argument_and_the_classes():
    saved = {"model": "resnet", "model_kwargs": {"depth": 18, "width": 64}, "num_classes": 3}
    now = {"model": "resnet", "model_kwargs": {"depth": 34}, "num_classes": 5}
    assert compat.differences(saved, now) == [
        "model_kwargs.depth: 18 saved, now 34",
        "model_kwargs.width: 64 saved, now <unset>",
        "num_classes: 3 saved, now 5",
    ]
    assert compat.differences(saved, dict(saved)) == []


def test_a_checkpoint_saved_on_8_devices_predicts_in_a_1_device_process(trained, tmp_path):
    image = str(tmp_path / "digit.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(image)
    done = subprocess.run(
        [sys.executable, "tools/predict.py", f"--checkpoint={trained}", image, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # was: "Topology mismatch detected"
    assert "digit.png" in done.stdout
