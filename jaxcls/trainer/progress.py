"""Console progress and log hygiene: the step/epoch/img-s/ETA line, the clu metric writer (or none
where TensorFlow is missing), and a filter that keeps chatty libraries' INFO lines off the console."""

from __future__ import annotations

import logging as pylogging
import math
import os
import time

import jax

from jaxcls.reporting import tensorboard


class _QuietLibraries(pylogging.Filter):
    """Drops INFO/DEBUG records from chatty libraries (Orbax logs every file it writes)."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}grain{os.sep}", f"{os.sep}jax{os.sep}_src{os.sep}")

    def filter(self, record: pylogging.LogRecord) -> bool:
        if record.levelno >= pylogging.WARNING:
            return True
        return not any(n in record.pathname for n in self.NOISY)


def quiet_library_logs() -> None:
    """Keeps the console readable: our progress lines, library warnings and errors only."""
    logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
        logger.addFilter(_QuietLibraries())


def make_writer(workdir: str):
    """The run's metric writer (`jaxcls.reporting.tensorboard`): event files from process 0, log
    lines only from the others."""
    return tensorboard.open_writer(workdir, just_logging=jax.process_index() > 0)


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Console progress: step, epoch, metrics, images/sec and ETA, printed at each log step.

    Also accumulates pure training time (between syncs, excluding the first step's compilation and
    everything done outside ``train_window``), from which the run's images/sec is reported.
    """

    def __init__(self, *, start_step: int, total_steps: int, steps_per_epoch: int, batch: int):
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.batch = batch
        self.train_seconds = 0.0
        self.timed_steps = 0
        self._mark_time: float | None = None
        self._mark_step = start_step

    def mark(self, step: int) -> None:
        """Starts a timed window at a synchronised point (after the device finished ``step``)."""
        self._mark_time = time.perf_counter()
        self._mark_step = step

    def close_window(self, step: int) -> float:
        """Ends the timed window at a synchronised point; returns its images/sec."""
        if self._mark_time is None:
            return float("nan")
        dt = time.perf_counter() - self._mark_time
        n = step - self._mark_step
        self._mark_time = None
        if n <= 0 or dt <= 0:
            return float("nan")
        self.train_seconds += dt
        self.timed_steps += n
        return n * self.batch / dt

    @property
    def images_per_sec(self) -> float:
        if self.timed_steps == 0 or self.train_seconds <= 0:
            return float("nan")
        return self.timed_steps * self.batch / self.train_seconds

    def line(self, step: int, metrics: dict[str, float], rate: float) -> str:
        epoch = (step - 1) // self.steps_per_epoch + 1
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        ips = self.images_per_sec if math.isnan(rate) else rate
        eta = (self.total_steps - step) * self.batch / ips if ips and ips > 0 else float("nan")
        shown = " ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if k in ("loss", "accuracy", "learning_rate")
        )
        return (
            f"step {step}/{self.total_steps} (epoch {epoch}/{epochs}) {shown} | "
            f"{ips:.1f} img/s | ETA {format_eta(eta)}"
        )
