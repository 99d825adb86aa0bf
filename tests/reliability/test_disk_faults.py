"""A full disk: one clear line, nothing half-written that a rerun trusts, a clean resume once space
is freed; a read-only filesystem is reported before any training starts.

The workdir is on a small tmpfs mounted by the test (root only: CI runs as root); without the
right to mount, the test is skipped with the reason.
"""

import json
import os
import subprocess

import pytest

from jaxcls.trainer import checkpoint as ckpt_lib
from tests.reliability.conftest import error_lines, run_main


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def committed_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    return (
        sorted(int(d) for d in os.listdir(latest) if d.isdigit()) if os.path.isdir(latest) else []
    )


def test_full_disk_fails_clearly_then_resumes_once_space_is_freed(small_disk):
    workdir = str(small_disk / "run")
    full = run_main(workdir)
    assert full.returncode == 2, full.stderr[-3000:]
    errors = error_lines(full.stderr)
    assert len(errors) == 1 and "No space left on device" in errors[0], full.stderr[-3000:]
    assert "rerun the same command to resume" in errors[0]
    # Orbax logs its background writer's error first; ours is the last word, not a traceback.
    assert full.stderr.rstrip().splitlines()[-2] == errors[0]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    # Every step Orbax counts as committed is whole; a partial write is only a temporary folder.
    steps = committed_steps(workdir)
    for step in steps:
        ckpt_lib.read_state(os.path.join(workdir, "checkpoints", "latest", str(step)))

    remount(small_disk, "size=64m")
    again = run_main(workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    if steps:
        assert f"Resuming from step {steps[-1]}" in again.stderr
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["steps_run"] == 39 and results["splits"]["test"]["accuracy"] > 0.2


def test_read_only_filesystem_is_reported_before_training(small_disk):
    os.makedirs(small_disk / "existing")
    remount(small_disk, "ro")
    for workdir, phrase in (
        (small_disk / "new" / "run", "cannot create workdir"),
        (small_disk / "existing", "cannot write in workdir"),
    ):
        done = run_main(str(workdir))
        assert done.returncode == 2, done.stderr[-3000:]
        errors = error_lines(done.stderr)
        assert len(errors) == 1 and phrase in errors[0] and "Read-only file system" in errors[0]
        assert "Training steps" not in done.stderr and "Traceback" not in done.stderr
