"""TensorBoard event files through clu: the one place that opens a writer, for the training
loop's scalars (`jaxcls.trainer.progress`) and the report's images (`report`).

clu writes event files through TensorFlow and imports it with its writers. Where TensorFlow is not
installed (a GPU image with JAX preinstalled, a Python TensorFlow has no wheels for) a run goes on
without event files: the first writer asked for says so once, and every writer is `NoEventFiles`.
"""

from __future__ import annotations

import functools
import os

from absl import logging


class NoEventFiles:
    """The writer where TensorFlow is missing: writes nothing. The console lines and results.json
    (which holds the history) carry the metrics, the report's PNGs its figures."""

    def write_hparams(self, hparams) -> None:
        pass

    def write_scalars(self, step, scalars) -> None:
        pass

    def write_images(self, step, images) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@functools.cache
def _metric_writers():
    """clu's ``metric_writers``, or None (said once) where TensorFlow cannot be imported."""
    try:
        from clu import metric_writers
    except ImportError as e:
        if not (e.name or "").startswith("tensorflow"):
            raise
        logging.warning(
            "No TensorBoard event files for this run: clu writes them through TensorFlow, which is "
            "not installed (pip install tensorflow-cpu); metrics go to the console and results.json."
        )
        return None
    return metric_writers


def open_writer(workdir: str, *, just_logging: bool = False):
    """clu's default writer for ``workdir/tensorboard`` (only log lines with ``just_logging``), or
    `NoEventFiles` where TensorFlow is missing."""
    metric_writers = _metric_writers()
    if metric_writers is None:
        return NoEventFiles()
    return metric_writers.create_default_writer(
        os.path.join(workdir, "tensorboard"), just_logging=just_logging
    )
