"""Two runs, one workdir: the second refuses naming the live holder; a dead holder's lock is taken
over with a warning; other processes of a multi-process run go on."""

import os
import signal
import socket
import subprocess
import time

import pytest

from jaxcls.trainer import lock
from tests.reliability.conftest import ROOT, error_lines, jaxcls_main

LONG = "--config.num_epochs=50"  # Still running while the second process starts.


def holder_line(workdir):
    path = os.path.join(workdir, lock.LOCK_FILE)
    return open(path).read().strip() if os.path.exists(path) else ""


def test_second_run_refuses_naming_holder_then_dead_holders_lock_is_taken_over(tmp_path, caplog):
    workdir = str(tmp_path / "run")
    first = subprocess.Popen(
        jaxcls_main(workdir, LONG), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 180
        while not holder_line(workdir) and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None and f'"pid": {first.pid}' in holder_line(workdir)
        for mode in ("train", "eval"):
            second = subprocess.run(
                jaxcls_main(workdir, LONG, f"--mode={mode}"),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert second.returncode == 2, second.stderr[-2000:]
            error = error_lines(second.stderr)
            assert len(error) == 1, second.stderr[-2000:]
            assert f"in use by pid {first.pid} on host {socket.gethostname()}" in error[0]
            assert "Traceback" not in second.stderr
        assert first.poll() is None, "the live run was disturbed by the second one"
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert f'"pid": {first.pid}' in holder_line(workdir)  # kill -9 left its line behind
    with caplog.at_level("WARNING"):
        with lock.hold(workdir) as held:
            assert held.took_over["pid"] == first.pid
            assert f'"pid": {os.getpid()}' in holder_line(workdir)
    assert f"pid {first.pid}" in caplog.text and "no longer running" in caplog.text
    assert holder_line(workdir) == ""  # released: emptied, unlocked


def test_lock_held_in_this_process_refuses_a_second_holder_and_spares_other_processes(tmp_path):
    with lock.hold(str(tmp_path)):
        with pytest.raises(lock.WorkdirLocked, match=f"pid {os.getpid()} on host"):
            lock.WorkdirLock(str(tmp_path)).acquire()
        with lock.hold(str(tmp_path), process_index=1) as other:  # process 1 of the same run
            assert other is None
    with lock.hold(str(tmp_path)) as again:  # released at the end of the block
        assert again.took_over is None


def test_uncreatable_or_missing_workdir_is_reported_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create workdir .*a_file/run"):
        lock.prepare_workdir(str(blocker / "run"))
    with pytest.raises(ValueError, match="does not exist"):
        lock.prepare_workdir(str(tmp_path / "missing"), create=False)
