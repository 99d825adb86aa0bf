"""Running a study: a rerun skips finished variants and resumes an interrupted one from its
checkpoints; a failed variant is recorded (study.csv, error.txt) and the study goes on; the table
is sorted by the chosen metric."""

import csv
import json
import logging as pylogging
import os
import signal
import subprocess
import sys
import threading
import time

from absl import logging

from jaxcls.config_base import study_config
from jaxcls.study import run, standin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_study(data_dir: str, variants: dict, subprocess_mode: bool = False):
    """cnn_small at 16x16 on a 3-class synthetic folder (30 images), one epoch per variant
    unless a variant says otherwise: 3 train steps an epoch at batch 8."""
    c = study_config()
    c.dataset = standin.make(
        data_dir, standin.standin(("ant", "bee", "cat"), per_class=12, size=16)
    )
    c.model.name = "cnn_small"
    c.data.image_size = 16
    c.num_epochs = 1
    c.batch_size = 8
    c.checkpoint.async_save = False
    c.efficiency.repeats = 2
    c.study.variants = variants
    c.study.subprocess = subprocess_mode
    c.lock()
    return c


def read_rows(path):
    with open(path, newline="") as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def checkpoint_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    return (
        sorted(int(d) for d in os.listdir(latest) if d.isdigit()) if os.path.isdir(latest) else []
    )


def sigterm_at_first_checkpoint(workdir, fired):
    """From another thread: SIGTERM this process once ``workdir`` has a checkpoint (the
    trainer's handler then saves and stops the variant, as a scheduler's preemption would)."""
    deadline = time.time() + 600
    while not checkpoint_steps(workdir) and time.time() < deadline:
        time.sleep(0.05)
    fired.append(checkpoint_steps(workdir))
    os.kill(os.getpid(), signal.SIGTERM)


def test_rerun_skips_finished_resumes_interrupted_and_records_a_failure(tmp_path, caplog):
    study = tiny_study(
        str(tmp_path / "data"),
        {
            "a": {"optimizer": {"learning_rate": 3e-3}},
            "b": {"num_epochs": 4, "checkpoint": {"every_steps": 1}},
            "c_bad": {"dataset": "folder:/no/such/folder"},  # fails when its data is built
        },
    )
    b_dir = str(tmp_path / "b")
    fired = []
    outside = []  # a SIGTERM outside the trainer's loop must not end pytest
    previous = signal.signal(signal.SIGTERM, lambda *a: outside.append(a))
    watcher = threading.Thread(target=sigterm_at_first_checkpoint, args=(b_dir, fired))
    try:
        watcher.start()
        code = run.run_study(study, str(tmp_path), metrics=("val/accuracy",))
        watcher.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not outside and fired and fired[0], (outside, fired)
    assert code == 143  # interrupted: the study stops, rerun to resume
    a_results = tmp_path / "a" / "results.json"
    assert a_results.exists() and not (tmp_path / "b" / "results.json").exists()
    assert not (tmp_path / "c_bad").exists()  # not started after the interruption
    rows = read_rows(tmp_path / "study.csv")
    assert rows["a"]["status"] == "done" and rows["b"]["status"] == "interrupted"
    interrupted_at = checkpoint_steps(b_dir)[-1]
    steps_per_epoch = json.loads(a_results.read_text())["steps_per_epoch"]
    assert 0 < interrupted_at < 4 * steps_per_epoch

    a_mtime = a_results.stat().st_mtime
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.INFO)  # the trainer's "Resuming from step N" line
    caplog.set_level(pylogging.INFO, logger="absl")
    try:
        code = run.run_study(study, str(tmp_path), metrics=("val/accuracy", "latency"))
    finally:
        logging.set_verbosity(verbosity)
    assert code == 1  # c_bad failed
    assert a_results.stat().st_mtime == a_mtime  # skipped, not run again
    assert f"Resuming from step {interrupted_at}" in caplog.text  # b resumed, not restarted
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert b["steps_run"] == 4 * steps_per_epoch and b["epochs_run"] == 4
    rows = read_rows(tmp_path / "study.csv")
    assert [rows[n]["status"] for n in ("a", "b", "c_bad")] == ["done", "done", "failed"]
    assert "/no/such/folder" in rows["c_bad"]["error"]
    assert "/no/such/folder" in (tmp_path / "c_bad" / "error.txt").read_text()
    # Sorted by validation accuracy, best first; the failed variant last.
    order = list(rows)
    assert order[-1] == "c_bad"
    accuracies = [float(rows[n]["val_accuracy"]) for n in order[:2]]
    assert accuracies == sorted(accuracies, reverse=True)
    for column in ("test_accuracy", "params_trainable", "latency_b1_p50_ms", "checkpoint_mb"):
        assert float(rows["a"][column]) > 0, column
    md = (tmp_path / "study.md").read_text()
    assert "| variant | val accuracy |" in md and "- c_bad failed: " in md
    for name in ("study_curves.png", "bar_val_accuracy.png", "bar_latency_b1_p50_ms.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_failed_variants_in_child_processes_are_recorded_and_the_study_goes_on(tmp_path):
    """The default, one process per variant: each failure is recorded with the child's one-line
    error, every variant is tried, and the command exits 1 saying which failed."""
    config = tmp_path / "study.py"
    config.write_text(
        "from tests.study.test_runner import tiny_study\n\n\n"
        "def get_config():\n"
        f"    return tiny_study({str(tmp_path / 'data')!r}, {{\n"
        "        'bad_map': {'data': {'class_map': 'no_such_map'}},\n"
        "        'no_folder': {'dataset': 'folder:/no/such/folder'},\n"
        "    }, subprocess_mode=True)\n"
    )
    out = tmp_path / "study"
    command = [sys.executable, "-m", "jaxcls.study", f"--config={config}", f"--workdir={out}"]
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "study: variant 1/2 bad_map ..." in r.stdout
    assert "study: variant 2/2 no_folder: FAILED after" in r.stdout
    assert "study: 2 of 2 variants failed: bad_map, no_folder" in r.stdout
    rows = read_rows(out / "study.csv")
    assert "no_such_map" in rows["bad_map"]["error"]
    assert "/no/such/folder" in rows["no_folder"]["error"]
    assert "Traceback" not in rows["no_folder"]["error"]  # the child's one-line error
    error = (out / "no_folder" / "error.txt").read_text()
    assert error.startswith("train failed (exit code 2): ")
    # The variant's config file runs the variant alone, too.
    assert "python -m jaxcls.main --config=" in (out / "bad_map" / "config.py").read_text()
