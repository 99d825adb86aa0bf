"""What the benchmarks share: a reference script in another interpreter, Markdown tables, the
process set up as the trainer's (`prepare_process`: malloc, ``--cpu_devices``), the CPU time a
virtual machine's host took while something was measured (`StealMeter`), and the error a
benchmark command reports as a usage error."""

from __future__ import annotations

import json
import os
import subprocess

from jaxcls import files


class UsageError(ValueError):
    """A benchmark was given something it cannot run on; the command line reports it as
    ``<tool>: error: <message>`` with exit code 2."""


def run_reference(
    python: str, script: str, *args, env: dict | None = None
) -> tuple[dict | None, str]:
    """Runs ``script`` (which prints one JSON line last) with ``python``, in this process's
    environment with ``env`` added.

    Returns ``(parsed JSON, "")``, or ``(None, the last stderr line)`` when it fails (for example
    because torch is not installed there, or ``python`` does not exist), so the caller can say
    why a column is missing.
    """
    try:
        r = subprocess.run(
            [python, "-c", script, *map(str, args)],
            capture_output=True,
            text=True,
            env=dict(os.environ, **(env or {})),
        )
    except OSError as e:  # no such interpreter, or not executable
        return None, f"{type(e).__name__}: {e.strerror}"
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1]), ""


# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal [guest guest_nice]; guest
# time is already counted in user and nice.
_STAT_FIELDS = 8
_STEAL = 7
PROC_STAT = "/proc/stat"


def cpu_ticks(stat: str | None = None) -> tuple[int, int] | None:
    """``(all, stolen)`` clock ticks of every CPU since boot, from ``stat`` (default Linux's
    /proc/stat); None where it cannot be read (macOS, Windows) or has no steal field (kernels
    before 2.6.11)."""
    try:
        with open(stat or PROC_STAT) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if fields[:1] != ["cpu"] or len(fields) < 1 + _STAT_FIELDS:
        return None
    ticks = [int(v) for v in fields[1 : 1 + _STAT_FIELDS]]
    return sum(ticks), ticks[_STEAL]


class StealMeter:
    """The share of all CPUs' time that the hypervisor of a virtual machine gave to something
    else ("steal") while inside ``with meter:``, summed over every time it was entered.

    On a shared cloud machine the host takes a guest's virtual CPUs away at times: on the project's
    2-core machine a `compare` round of the scratch CNN under 34% steal trained at 631.8 img/s,
    the rounds under 0-2% at 1352.7-1440.5 (docs/performance.md, "CPU steal"). A benchmark that
    reports steal beside each number says which rounds ran on a quiet machine. ``percent`` is
    None where /proc/stat cannot be read or no clock tick passed."""

    def __init__(self, stat: str | None = None):
        self._stat, self._start, self.total, self.stolen, self.known = stat, None, 0, 0, True

    def __enter__(self):
        self._start = cpu_ticks(self._stat)
        return self

    def __exit__(self, *exc):
        end = cpu_ticks(self._stat)
        if self._start is None or end is None:
            self.known = False
        else:
            self.total += end[0] - self._start[0]
            self.stolen += end[1] - self._start[1]
        return False

    @property
    def percent(self) -> float | None:
        if not self.known or self.total <= 0:
            return None
        return 100.0 * self.stolen / self.total


def write_table(lines: list[str], path: str) -> str:
    """Prints a Markdown table and writes it to ``path``; returns its text."""
    table = "\n".join(lines)
    print("\n" + table)
    files.write_text(path, table + "\n")
    return table


def seconds_once(fn, *args) -> float:
    """Wall seconds of one call of ``fn(*args)``, waiting for its device results."""
    import time

    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def check_batch_divides(batch: int, cpu_devices: int | None) -> None:
    """UsageError when an explicit ``--cpu_devices`` count (not 0 or None: those the tools pick)
    does not divide ``--batch``: the data-parallel step could not split it."""
    if cpu_devices and batch % cpu_devices:
        raise UsageError(f"--batch={batch} is not divisible by --cpu_devices={cpu_devices}")


def prepare_process(cpu_devices: int | None = None, batch_sizes=()) -> None:
    """Sets up this process as the trainer does before JAX starts its backends (call before
    that): glibc's malloc keeps freed memory (`jaxcls.native.malloc`, the trainer's default
    ``reuse_memory=True``), and, unless ``cpu_devices`` is None, the XLA:CPU devices: ``n > 1``
    devices; ``0`` what the trainer does with ``cpu_devices=0`` (one per core, dividing
    ``batch_sizes``; each model's train step then uses one or all of them,
    `parallel.auto_cpu_mesh_size`)."""
    from jaxcls.native import malloc
    from jaxcls.trainer import parallel

    malloc.reuse_freed_memory()
    if cpu_devices == 0:
        parallel.request_cpu_devices(parallel.cpu_device_count(0, batch_sizes), auto=True)
    elif cpu_devices is not None and cpu_devices > 1:
        parallel.request_cpu_devices(cpu_devices)
