"""The measuring core: what a model costs to run, on the device it runs on.

For a `Subject` (a registry name with random weights, or a trained workdir / converted
checkpoint) `measure` gives, in one flat row with units in the keys:

- ``params_trainable`` / ``params_non_trainable`` (nnx.Param values / BatchNorm statistics, as
  Keras counts them) and ``gflops`` (XLA's cost analysis of one eval-mode forward on one image);
- ``latency_b1_p50_ms`` / ``_p90_ms`` / ``_std_ms``: one image at a time, jitted, after warm-up,
  each call blocked on; ``compile_b1_s``: the batch-1 forward's lower + compile;
- ``infer_img_s`` and ``train_img_s`` at ``batch`` (the trainer's real train step with SGD +
  momentum, data-parallel over ``train_devices`` devices), the median of several timed loops;
  ``train_compile_s``: its first step;
- memory: ``xla_memory_mb`` (the compiled batch-``batch`` forward's memory analysis: arguments,
  outputs and temporaries), ``rss_growth_mb`` (the process's peak resident set growth while
  measuring, from the resident set at its start; on Linux the peak mark is reset first) and
  ``device_peak_mb`` (the device's own peak bytes in use, GPU/TPU only);
- ``disk_mb`` (parameters and statistics as Orbax saves them, float32) and, when asked,
  ``disk_mb_bf16``.

Every row also names the platform, device kind and device count: the numbers are that
device's own.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcls import files
from jaxcls.benchmark import mfu
from jaxcls.models import conv
from jaxcls.native import malloc

MB = 2**20


@dataclasses.dataclass
class Subject:
    """A model to measure, split for functional use."""

    label: str  # what the tables call it: the model name, or the workdir's folder name
    model_name: str
    graphdef: Any
    params: Any
    rest: Any
    image_size: int
    num_classes: int
    workdir: str | None = None  # set for a trained workdir / checkpoint
    dtype: str = "float32"  # compute dtype (parameters stay float32)

    @property
    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params, self.rest, copy=True)


def from_registry(
    name: str, size: int | None = None, num_classes: int = 1000, dtype: str = "float32"
) -> Subject:
    """Model ``name`` with random weights at ``size`` (default: its registered input size),
    computing in ``dtype``."""
    from jaxcls import models

    info = models.model_info(name)  # ValueError with close names for an unknown model
    size = int(size or info.input_size)
    kwargs = {"input_size": size} if "input_size" in info.defaults else {}
    model = models.create(
        info.name, num_classes=num_classes, rngs=nnx.Rngs(0), dtype=jnp.dtype(dtype), **kwargs
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Subject(info.name, info.name, graphdef, params, rest, size, num_classes, dtype=dtype)


def from_checkpoint(path: str) -> Subject:
    """The model of a trained workdir or converted checkpoint, at its own input size."""
    from jaxcls.explain import inference

    loaded = inference.load_for_inference(path)
    label = os.path.basename(os.path.normpath(path))
    return Subject(
        label,
        loaded.meta["model"],
        loaded.graphdef,
        loaded.params,
        loaded.rest,
        loaded.image_size[0],
        len(loaded.class_names),
        workdir=path,
        dtype=loaded.meta.get("model_dtype", "float32"),  # absent in converted weight files
    )


def device_info() -> dict:
    """Platform, device kind and device count of the default backend."""
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "devices": len(devices),
    }


def count_params(subject: Subject) -> dict:
    """Trainable parameters and non-trainable values (BatchNorm statistics)."""
    stats = nnx.state(subject.model, nnx.BatchStat)
    return {
        "params_trainable": sum(int(x.size) for x in jax.tree.leaves(subject.params)),
        "params_non_trainable": sum(int(x.size) for x in jax.tree.leaves(stats)),
    }


def forward_fn(subject: Subject):
    """The jitted eval-mode forward pass ``(params, rest, images) -> logits``."""
    graphdef = subject.graphdef

    def forward(params, rest, x):
        logits, _ = nnx.merge(graphdef, params, rest, copy=True)(x, train=False)
        return logits

    return jax.jit(forward, compiler_options=conv.compiler_options())


def images(subject: Subject, batch: int) -> jax.Array:
    """``batch`` random images at the subject's size (the same on every call)."""
    shape = (batch, subject.image_size, subject.image_size, 3)
    return jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)


def compile_timed(fn, *args) -> tuple[Any, float, Any]:
    """``(compiled, seconds to lower and compile, lowered)`` of a jitted ``fn`` on ``args``."""
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    compiled = lowered.compile()
    return compiled, time.perf_counter() - t0, lowered


def timings_ms(call, repeats: int, warmup: int) -> np.ndarray:
    """Wall times of ``repeats`` blocked calls of ``call()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


def latency(subject: Subject, *, repeats: int = 20, warmup: int = 3) -> dict:
    """Batch-1 forward latency (p50, p90, std in ms), its compile time and GFLOPs."""
    x = images(subject, 1)
    compiled, seconds, _ = compile_timed(forward_fn(subject), subject.params, subject.rest, x)
    times = timings_ms(lambda: compiled(subject.params, subject.rest, x), repeats, warmup)
    from jaxcls.models.summary import forward_gflops

    return {
        # Counted on the portable ops: the program timed runs native kernels, no FLOPs to XLA.
        "gflops": forward_gflops(subject.model, subject.image_size),
        "latency_b1_p50_ms": float(np.percentile(times, 50)),
        "latency_b1_p90_ms": float(np.percentile(times, 90)),
        "latency_b1_std_ms": float(times.std()),
        "compile_b1_s": seconds,
    }


def inference(subject: Subject, batch: int, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Forward images/sec at ``batch`` (median over ``repeats`` calls) and its memory."""
    x = images(subject, batch)
    compiled, _, _ = compile_timed(forward_fn(subject), subject.params, subject.rest, x)
    times = timings_ms(lambda: compiled(subject.params, subject.rest, x), repeats, warmup)
    return {
        "infer_img_s": batch / (float(np.median(times)) / 1e3),
        "xla_memory_mb": xla_memory_bytes(compiled) / MB,
    }


def xla_memory_bytes(compiled) -> int:
    """Arguments + outputs + temporaries of a compiled executable (XLA's memory analysis)."""
    m = compiled.memory_analysis()
    if m is None:
        return 0
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def train_setup(subject: Subject, batch: int, devices: int = 1):
    """The trainer's real train step (SGD + momentum) for ``subject``, data-parallel over the
    first ``devices`` devices: ``(compiled_steps, state, sharded random batch)``."""
    from jaxcls.benchmark import train_step
    from jaxcls.trainer import parallel

    mesh = parallel.make_mesh(devices)
    parallel.local_batch_size(batch, mesh)  # ValueError unless the devices divide the batch
    tx, make_steps = train_step.sgd_steps(mesh, subject.graphdef, subject.num_classes)
    compiled = make_steps()
    state = train_step.initial_state(compiled, subject.params, subject.rest, tx)
    data = train_step.random_batch(mesh, batch, subject.image_size, subject.num_classes)
    return compiled, state, data


def train(
    subject: Subject, batch: int, *, steps: int = 3, rounds: int = 3, devices: int = 1
) -> dict:
    """The trainer's real train step (SGD + momentum) at ``batch``, data-parallel over
    ``devices`` devices (`train_setup`): images/sec (median of ``rounds`` loops of ``steps``) and
    the first step's compile + run seconds."""
    compiled_steps, state, data = train_setup(subject, batch, devices)
    t0 = time.perf_counter()
    state, metrics = compiled_steps.train(state, data)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t0
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled_steps.train(state, data)
            malloc.release_if_grown()  # As the trainer does after every step.
        jax.block_until_ready(metrics)
        rates.append(steps * batch / (time.perf_counter() - t0))
    return {
        "train_img_s": statistics.median(rates),
        "train_compile_s": first,
        "train_devices": devices,
    }


def disk_bytes(subject: Subject, dtype=jnp.float32) -> int:
    """Bytes of the parameters and statistics as Orbax writes them, cast to ``dtype``."""
    import orbax.checkpoint as ocp

    stats = nnx.state(subject.model, nnx.BatchStat)
    tree = {"params": nnx.to_pure_dict(subject.params), "batch_stats": nnx.to_pure_dict(stats)}
    tree = jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state")
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(path, tree)
        return files.size_bytes(path)


def peak_rss_bytes() -> int:
    """The process's peak resident set size: Linux's VmHWM (which `reset_peak_rss` lowers),
    elsewhere getrusage's maximum (macOS reports bytes, others KiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_peak_rss() -> None:
    """Lowers the peak RSS mark to the current RSS where Linux allows it, so that a model
    measured after a bigger one shows its own growth, not zero under the other's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def device_peak_bytes() -> int | None:
    """The default device's peak bytes in use (GPU/TPU); None where it keeps no statistics."""
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def measure(
    subject: Subject,
    *,
    batch: int = 32,
    repeats: int = 20,
    train_steps: int = 3,
    rounds: int = 3,
    with_train: bool = True,
    bf16: bool = False,
    devices: int = 1,
) -> dict:
    """Everything above for one subject, as one flat row (see the module docstring); the train
    step runs data-parallel over ``devices`` devices (0: as the trainer chooses,
    `parallel.auto_cpu_mesh_size`), everything else on one."""
    if devices == 0:
        from jaxcls.models import summary
        from jaxcls.trainer import parallel

        size = subject.image_size
        devices = parallel.auto_cpu_mesh_size(
            0, lambda: summary.train_cost(subject.model, size), batch
        ) or len(jax.devices())
    reset_peak_rss()
    rss0 = peak_rss_bytes()
    row = {"model": subject.label, "architecture": subject.model_name, **device_info()}
    row["image_size"] = subject.image_size
    row.update(count_params(subject))
    row.update(latency(subject, repeats=repeats))
    row.update(inference(subject, batch, repeats=rounds))
    if with_train:
        row.update(train(subject, batch, steps=train_steps, rounds=rounds, devices=devices))
        row["mfu"] = mfu.mfu(
            row["train_img_s"], row["gflops"], row["device_kind"], subject.dtype, devices
        )
    row["batch"] = batch
    row["rss_growth_mb"] = (peak_rss_bytes() - rss0) / MB
    peak = device_peak_bytes()
    row["device_peak_mb"] = None if peak is None else peak / MB
    row["disk_mb"] = disk_bytes(subject) / MB
    if bf16:
        row["disk_mb_bf16"] = disk_bytes(subject, jnp.bfloat16) / MB
    return row
