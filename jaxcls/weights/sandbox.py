"""Runs a reader in a child process with a time bound, for C libraries that can hang or crash on a
damaged file.

Why: ``tools/fuzz.py`` found mutated Keras ``.h5`` files on which the HDF5 C library loops forever
or dies with a segmentation fault inside ``h5py``; in the caller's process that would hang or kill
a training run. In a child, a hang becomes a `WeightsError` after the time bound and a crash
becomes a `WeightsError` naming the exit signal; the caller's process is untouched.

Children come from a ``forkserver`` (started once per process, single-threaded, so forking it is
safe even when the caller runs JAX's threads), with the readers' modules preloaded: after the first
call a read costs a fork, not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

from jaxcls.weights.errors import WeightsError

_CONTEXT = None
BASE_SECONDS = 60.0  # The time bound of a tiny file (tools/fuzz.py lowers it).


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["jaxcls.weights.readers"])
    return _CONTEXT


def time_bound(path: str) -> float:
    """Seconds a sound file needs at most: `BASE_SECONDS` plus 1 s per 5 MB (a slow disk)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return BASE_SECONDS + size / 5e6


def _child(fn, path: str, conn) -> None:
    try:
        conn.send(("ok", fn(path)))
    except WeightsError as e:
        conn.send(("error", str(e)))
    except Exception as e:  # noqa: BLE001 - reported to the parent as a WeightsError.
        conn.send(("error", f"{path}: unreadable ({type(e).__name__}: {e})"))
    finally:
        conn.close()


def call(fn, path: str, *, what: str, timeout: float | None = None) -> Any:
    """``fn(path)`` computed in a child process; WeightsError when it fails, hangs past
    ``timeout`` (default `time_bound`) or crashes. ``fn`` must be a module-level function whose
    result pickles (dicts of numpy arrays do)."""
    timeout = time_bound(path) if timeout is None else timeout
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, path, send), daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise WeightsError(
                f"{path}: reading this {what} file did not finish in {timeout:.0f} s "
                "(corrupt file?); refused"
            )
        try:
            status, value = receive.recv()
        except EOFError:
            proc.join(5)
            code = proc.exitcode
            why = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
            raise WeightsError(
                f"{path}: the {what} library crashed reading this file ({why}); corrupt file?"
            ) from None
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
    if status == "error":
        raise WeightsError(value)
    return value
