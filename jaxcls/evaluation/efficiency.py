"""What a trained run costs to use: the ``efficiency`` block of results.json (and the runs table).

Measured after the final evaluation on the best checkpoint's weights, with the measuring core of
:mod:`jaxcls.benchmark.measure`, in seconds: parameters, GFLOPs, batch-1 latency, inference
images/sec at the eval batch size, memory, checkpoint size, and the compile times of this process.
``config.efficiency.enabled=False`` skips it.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from jaxcls import files
from jaxcls.benchmark import measure
from jaxcls.trainer import checkpoint as ckpt_lib


def efficiency(run, best_state, best_step: int | None) -> dict:
    """The efficiency block of a run whose best weights are ``best_state``."""
    config = run.config.efficiency
    params, rest = jax.device_get((best_state.params, best_state.rest))  # One device, host copy.
    subject = measure.Subject(
        run.parts.name,
        run.parts.name,
        run.parts.graphdef,
        params,
        rest,
        int(run.data.image_size[0]),
        run.data.num_classes,
        workdir=run.workdir,
    )
    batch = run.config.eval_batch_size or run.config.batch_size
    block = {**measure.device_info(), **measure.count_params(subject)}
    block.update(measure.latency(subject, repeats=config.repeats))
    block.update(measure.inference(subject, batch, repeats=3))
    block["infer_batch"] = batch
    block["process_peak_rss_mb"] = measure.peak_rss_bytes() / measure.MB
    peak = measure.device_peak_bytes()
    block["device_peak_mb"] = None if peak is None else peak / measure.MB
    block["checkpoint_mb"] = _checkpoint_mb(run, best_step)
    block["train_compile_s"] = run.train_compile_seconds
    logging.info(
        "Efficiency: %s params, %.3f GFLOPs, batch-1 latency %.2f ms, %.1f img/s at batch %d",
        f"{block['params_trainable']:,}",
        block["gflops"],
        block["latency_b1_p50_ms"],
        block["infer_img_s"],
        batch,
    )
    block["measured_on"] = "one device"  # The trainer may have used several.
    return {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in block.items()}


def _checkpoint_mb(run, best_step: int | None) -> float | None:
    """The size of the evaluated checkpoint step as saved (state, data position and meta)."""
    if best_step is None:
        return None
    directory = ckpt_lib.checkpoints_dir(run.workdir)
    for store in (ckpt_lib.BEST, ckpt_lib.LATEST):
        step_dir = os.path.join(directory, store, str(best_step))
        if os.path.isdir(step_dir):
            return files.size_bytes(step_dir) / measure.MB
    return None
