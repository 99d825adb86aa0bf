"""One live run per workdir: a lock file that names its holder, released by the OS when it dies.

``{workdir}/.jaxcls.lock`` is locked with ``fcntl.flock`` for as long as the run lives, and holds one
JSON line naming the holder (pid, host, start time, mode). The kernel drops the lock when the
process ends in any way (exit, exception, ``kill -9``), so a dead holder can never block a rerun:

- a second process on a live run's workdir gets `WorkdirLocked` (a ValueError: one line, exit 2)
  naming the holder;
- a lock file whose holder is gone (its flock released, its line still there) is taken over with a
  warning naming the dead holder;
- in a multi-process run only process 0 takes the lock; the other processes of the same run go
  on (they are started together by the launcher and share the workdir on purpose).

The file is never deleted (deleting it would let two processes lock two different files of the
same name): releasing empties it and unlocks. ``--mode=eval`` takes the same lock: it writes
``results_eval.json`` and the reports into the workdir and reads checkpoints that a live run may be
rotating, so it waits for the run to finish (use ``tools/predict.py`` meanwhile).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket

from absl import logging

from jaxcls import files

LOCK_FILE = ".jaxcls.lock"


class WorkdirLocked(ValueError):
    """The workdir is held by another live process."""


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
        f"(--mode={holder.get('mode')})"
    )


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if not raw:
        return {}
    try:
        holder = json.loads(raw)
    except ValueError:
        return {"pid": "?", "host": "?", "started": "?", "mode": "?", "raw": raw[:200]}
    return holder if isinstance(holder, dict) else {}


class WorkdirLock:
    """The lock on one workdir, held by this process from `acquire` to `release` (or its death)."""

    def __init__(self, workdir: str, mode: str = "train"):
        self.path = os.path.join(os.fspath(workdir), LOCK_FILE)
        self.mode = mode
        self.fd: int | None = None
        self.took_over: dict | None = None  # The dead holder's line, when the lock was stale.

    def acquire(self) -> WorkdirLock:
        """Takes the lock; raises `WorkdirLocked` naming the live holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirLocked(
                f"workdir {os.path.dirname(self.path)} is in use by {_describe(holder)}; wait for "
                f"it to finish or stop it, or use another --workdir (lock file: {self.path})"
            ) from None
        except OSError:
            os.close(fd)
            raise
        stale = _read_holder(fd)
        if stale:
            self.took_over = stale
            logging.warning(
                "Taking over the lock of workdir %s left by %s, which is no longer running",
                os.path.dirname(self.path),
                _describe(stale),
            )
        line = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "mode": self.mode,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(line) + "\n").encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Empties the lock file and unlocks it (the file stays, see the module docstring)."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def prepare_workdir(workdir: str, *, create: bool = True) -> None:
    """Makes sure ``workdir`` exists (created with its parents when ``create``) and can be written,
    before any training starts: a read-only, missing or unwritable place is one clear ValueError.
    An object-store workdir (gs://...) is left to Orbax and etils.epath, which report their own
    errors."""
    if files.is_url(workdir):
        return
    if not create and not os.path.isdir(workdir):
        raise ValueError(f"workdir {workdir} does not exist (train into it first)")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"cannot create workdir {workdir}: {e.strerror or e} ({e.filename or workdir}); "
            "choose a --workdir in a folder you can write"
        ) from None
    probe = os.path.join(workdir, LOCK_FILE)
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as e:
        raise ValueError(
            f"cannot write in workdir {workdir}: {e.strerror or e}; choose a --workdir you can write"
        ) from None


@contextlib.contextmanager
def hold(workdir: str, mode: str = "train", process_index: int = 0):
    """Holds the workdir's lock for the body when ``process_index`` is 0; other processes of a
    multi-process run go on without it."""
    if process_index != 0:
        yield None
        return
    if files.is_url(workdir):  # Object stores have no flock: nothing guards a gs:// workdir.
        logging.warning("No workdir lock on %s: two runs on it would not be stopped.", workdir)
        yield None
        return
    lock = WorkdirLock(workdir, mode).acquire()
    try:
        yield lock
    finally:
        lock.release()
