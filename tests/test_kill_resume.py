"""kill -9 after the first checkpoint, rerun with the same workdir: same results as never killed."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "--config=configs/cnn.py",
    "--config.model.name=cnn_small",
    "--config.data.image_size=16",
    "--config.num_epochs=2",
    "--config.batch_size=32",
    "--config.checkpoint.every_steps=7",
]


def command(workdir):
    return [sys.executable, "-m", "jaxcls.main", f"--workdir={workdir}", *ARGS]


def committed_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    if not os.path.isdir(latest):
        return []
    return sorted(int(d) for d in os.listdir(latest) if d.isdigit())


def final_params(workdir):
    step = committed_steps(workdir)[-1]
    with ocp.StandardCheckpointer() as c:
        return c.restore(os.path.join(workdir, "checkpoints", "latest", str(step), "state"))[
            "params"
        ]


def test_kill_9_after_first_checkpoint_then_rerun_matches_uninterrupted(tmp_path):
    ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
    subprocess.run(command(ref), cwd=ROOT, check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(
        command(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not committed_steps(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = committed_steps(killed)
    assert first and first[-1] < 78, first  # killed part-way (78 steps in all)
    assert not os.path.exists(os.path.join(killed, "results.json"))

    subprocess.run(command(killed), cwd=ROOT, check=True, capture_output=True, timeout=600)
    r_ref = json.load(open(os.path.join(ref, "results.json")))
    r_killed = json.load(open(os.path.join(killed, "results.json")))
    assert r_killed["steps_run"] == r_ref["steps_run"] == 78
    assert r_killed["splits"] == r_ref["splits"]
    jax.tree.map(np.testing.assert_array_equal, final_params(killed), final_params(ref))
