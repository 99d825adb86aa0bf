"""Two real JAX processes (jax.distributed on localhost, 2 CPU devices each) train one run.

One 2-process run is killed (SIGKILL, whole process group) after its first checkpoint; copies of
its workdir resume as 2 processes and as 1 process with 4 devices; a 1-process 4-device run from
scratch is the reference. Which examples each process trained on at each step comes from the
trainer's debug record (JAXCLS_DEBUG_IDS_DIR).
"""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from tests.multihost import common

LAUNCH = os.path.join(common.ROOT, "tools", "launch_local.py")
STEPS = 18  # 3 epochs x 6 global batches of 16 (96 training images).


def launch_command(processes: int, args: list[str]) -> list[str]:
    return [sys.executable, LAUNCH, f"--processes={processes}", "--", *args]


def run_to_end(processes, data, workdir, cache, ids_dir):
    args = common.trainer_args(
        f"folder:{data}", workdir, cache, num_epochs=3, cpu_devices=4 // processes
    )
    r = subprocess.run(
        launch_command(processes, args),
        cwd=common.ROOT,
        env=common.clean_env(ids_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return r.stdout, json.load(open(os.path.join(workdir, "results.json")))


def committed_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    return (
        sorted(int(d) for d in os.listdir(latest) if d.isdigit()) if os.path.isdir(latest) else []
    )


def losses(results):
    return [row["train/loss"] for row in results["history"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    data = common.make_image_folder(str(tmp / "data"))
    cache = str(tmp / "xla_cache")  # Later runs reuse the first runs' compiled programs.
    out = {}

    # A 2-process run, killed (all of it) once its first checkpoint is committed.
    killed, killed_ids = str(tmp / "two" / "run"), str(tmp / "two_ids")
    args = common.trainer_args(f"folder:{data}", killed, cache, num_epochs=3, cpu_devices=2)
    proc = subprocess.Popen(
        launch_command(2, args),
        cwd=common.ROOT,
        env=common.clean_env(killed_ids),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not committed_steps(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the 2-process run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out["first_checkpoint"] = committed_steps(killed)[0]
    out["killed_steps"] = committed_steps(killed)
    out["killed_has_results"] = os.path.exists(os.path.join(killed, "results.json"))
    step_dir = os.path.join(killed, "checkpoints", "latest", str(out["first_checkpoint"]))
    out["first_checkpoint_files"] = sorted(os.listdir(os.path.join(step_dir, "data")))
    out["first_checkpoint_items"] = sorted(os.listdir(step_dir))

    # Its copy resumes as 1 process with 4 devices; the original resumes as 2 processes.
    one, one_ids = str(tmp / "one" / "run"), str(tmp / "one_ids")
    shutil.copytree(killed, one)
    out["two"] = (*run_to_end(2, data, killed, cache, killed_ids), killed, killed_ids)
    out["one"] = (*run_to_end(1, data, one, cache, one_ids), one, one_ids)
    # The reference: 1 process, 4 devices, same global batch, never interrupted.
    ref, ref_ids = str(tmp / "ref" / "run"), str(tmp / "ref_ids")
    out["ref"] = (*run_to_end(1, data, ref, cache, ref_ids), ref, ref_ids)
    return out


def test_killed_after_first_checkpoint_which_both_processes_wrote_together(runs):
    assert runs["first_checkpoint"] < STEPS and runs["killed_steps"][-1] < STEPS
    assert not runs["killed_has_results"]
    # One checkpoint: the replicated state and meta once, the data-iterator state per process.
    assert {"state", "data", "meta"} <= set(runs["first_checkpoint_items"])
    assert runs["first_checkpoint_files"] == ["process_0-of-2.json", "process_1-of-2.json"]


def test_two_processes_read_disjoint_shards_covering_each_epoch_once(runs):
    _, results, _, ids_dir = runs["two"]
    per_process = common.read_ids(ids_dir)
    assert sorted(per_process) == [0, 1]
    assert all(sorted(p) == list(range(1, STEPS + 1)) for p in per_process.values())
    for step in range(1, STEPS + 1):
        a, b = per_process[0][step], per_process[1][step]
        assert len(a) == len(b) == 8  # global batch 16 = 2 processes x 8
        assert not set(a) & set(b), step
    for epoch in range(3):
        seen = Counter()
        for step in range(epoch * 6 + 1, epoch * 6 + 7):
            seen.update(per_process[0][step] + per_process[1][step])
        assert sorted(seen) == list(range(96)) and set(seen.values()) == {1}, epoch
    assert results["num_processes"] == 2 and results["num_devices"] == 4


def test_resumed_runs_read_exactly_the_batches_of_an_uninterrupted_run(runs):
    ref = common.global_ids(common.read_ids(runs["ref"][3]))
    assert sorted(ref) == list(range(1, STEPS + 1))
    assert common.global_ids(common.read_ids(runs["two"][3])) == ref
    # The 1-process run recorded only the steps after the checkpoint it resumed from.
    resumed = common.global_ids(common.read_ids(runs["one"][3]))
    assert sorted(resumed) == list(range(runs["killed_steps"][-1] + 1, STEPS + 1))
    assert resumed == {step: ref[step] for step in resumed}


def test_losses_match_one_process_with_four_devices(runs):
    ref = runs["ref"][1]
    assert ref["num_processes"] == 1 and ref["num_devices"] == 4
    for name in ("two", "one"):
        results = runs[name][1]
        assert results["steps_run"] == ref["steps_run"] == STEPS
        # The tolerances of the 8-device vs 1-device test (tests/test_train.py).
        np.testing.assert_allclose(losses(results)[0], losses(ref)[0], rtol=2e-4)
        np.testing.assert_allclose(losses(results), losses(ref), rtol=3e-2)
        assert results["splits"]["test"]["count"] == ref["splits"]["test"]["count"]
        np.testing.assert_allclose(
            results["splits"]["test"]["accuracy"], ref["splits"]["test"]["accuracy"], atol=0.02
        )


def test_only_process_0_writes_results_reports_and_tensorboard(runs):
    stdout, results, workdir, _ = runs["two"]
    assert results["num_processes"] == 2

    def event_files(run_dir):
        return glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*"))

    # The TensorBoard files of one process (the 1-process reference), plus the training writer
    # of the killed launch: process 1 never opened a writer.
    assert len(event_files(workdir)) == len(event_files(runs["ref"][2])) + 1
    with open(os.path.join(os.path.dirname(workdir), "runs.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["workdir"] == os.path.abspath(workdir)]
    assert len(rows) == 1
    assert os.path.exists(os.path.join(workdir, "classification_report.txt"))
    assert "[p0]" in stdout and "[p1]" in stdout  # launch_local prefixes each child's lines
