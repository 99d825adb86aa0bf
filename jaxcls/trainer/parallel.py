"""Devices, the data-parallel mesh, batch placement and multi-host start-up.

One process drives all of its local devices through a 1-D mesh whose only axis is 'data'. Parameters
and optimizer state are replicated over it; each batch is one global array split along its leading
axis. XLA then computes gradients, BatchNorm statistics and metrics over the global batch: there is no
per-device Python code and no pmap.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(mode: str = "auto") -> None:
    """Calls ``jax.distributed.initialize()`` when running on several hosts.

    Args:
      mode: 'auto' initialises when the environment says this is one process of many (TPU pod
        slices, SLURM, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES set); 'on' always; 'off' never.

    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (what
    ``tools/launch_local.py`` and a hand-written cluster script set) are passed on explicitly;
    otherwise JAX detects the cluster (TPU VMs, SLURM, Open MPI, ...) itself.
    """
    if mode == "off" or jax.distributed.is_initialized():  # Off, or already done (idempotent).
        return
    multi = any(
        os.environ.get(k)
        for k in (
            "JAX_COORDINATOR_ADDRESS",
            "JAX_NUM_PROCESSES",
            "SLURM_NTASKS",
            "TPU_WORKER_HOSTNAMES",
        )
    )
    if mode == "on" or multi:
        kwargs = {}
        for key, name in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if os.environ.get(name):
                try:
                    kwargs[key] = int(os.environ[name])
                except ValueError:
                    raise ValueError(f"{name}={os.environ[name]!r} is not an integer") from None
        try:
            jax.distributed.initialize(**kwargs)
        except RuntimeError as e:  # Already initialised by the caller.
            if "already" not in str(e).lower():
                raise
        logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
        if jax.process_count() > 1:
            _orbax_barriers_through_the_coordinator()


ORBAX_BARRIER_FLAG = "experimental_orbax_use_distributed_barrier"


def _orbax_barriers_through_the_coordinator() -> None:
    """Makes Orbax's cross-process barriers use the JAX coordinator's key-value store.

    By default Orbax implements a barrier as a device collective (`sync_global_devices`), and it
    runs some of them in background threads (async save, finalising, cleaning up an interrupted
    save). A collective started in a background thread while the main thread runs a train step's
    collectives can be ordered differently on two processes: both wait forever (seen here with 2
    CPU processes, gloo). The coordinator's barrier is not a device op, so it cannot interleave.
    Takes effect where absl has parsed the flags (``jaxcls.main``)."""
    import orbax.checkpoint  # noqa: F401  (defines the flag)
    from absl import flags

    if ORBAX_BARRIER_FLAG in flags.FLAGS and flags.FLAGS.is_parsed():
        setattr(flags.FLAGS, ORBAX_BARRIER_FLAG, True)


CPU_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cpu_device_count(requested: int, batch_sizes, cores: int | None = None) -> int:
    """How many XLA:CPU devices a run asks for: ``requested`` if > 0, else one per CPU core,
    lowered to the largest count that divides every (nonzero) batch size.

    Why: XLA:CPU runs most of a train step's fused loops and reductions on one thread, so one
    device leaves the other cores mostly idle; over several CPU devices the data-parallel step
    runs one program per core (measured on the project's 2-core machine: docs/performance.md).
    """
    if requested > 0:
        return int(requested)
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
    sizes = [int(b) for b in batch_sizes if b]
    for n in range(max(int(cores), 1), 0, -1):
        if all(b % n == 0 for b in sizes):
            return n
    return 1


_auto_cpu_mesh = False  # request_cpu_devices(auto=True) made this process's CPU devices.


def request_cpu_devices(n: int, *, auto: bool = False) -> bool:
    """Asks XLA:CPU for ``n`` devices (XLA_FLAGS), unless XLA_FLAGS already sets a count. Takes
    effect only before JAX initialises its backends; harmless where the devices are GPUs/TPUs.
    Returns whether it set the flag.

    ``auto`` (``cpu_devices=0``): the count is jaxcls's own choice, one per core, so each run may
    use fewer of them (`auto_cpu_mesh_size`). A count the user set is always used whole."""
    global _auto_cpu_mesh
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_DEVICE_FLAG in flags or n < 1:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICE_FLAG}={int(n)}".strip()
    _auto_cpu_mesh = bool(auto)
    return True


# Train FLOPs per parameter per image (3 x forward FLOPs / parameters) under which one XLA:CPU
# device trains faster than one per core. Several devices each run the whole per-parameter work
# (gradient all-reduce, optimizer update, finiteness check) while the convolutions already use
# every core on one device; they pay off only where a step has much compute per parameter.
# Measured on 2 cores, batch 32, 1 vs 2 devices (docs/performance.md, "One or all CPU devices"):
# one device wins by 1.3-2.2x at 11-67 (ResNet-18 at 32/48/64 px, MobileNetV2 and Lite0 at 64 px,
# B0 at 32 px); from 253 up (the scratch CNN at 32/64 px, ResNet-18 at 128/224 px, B0 and
# ResNet-50 at 224 px) the two are within 8% of each other, and two won by 1.5x for the scratch
# CNN at 32 px and 1.1x for ResNet-50 at 224 px in separate processes.
CPU_DATA_PARALLEL_MIN_FLOPS_PER_PARAM = 150.0
# ... and at least this many train GFLOPs per step on each device. A step on several devices
# pays a fixed cost (the devices' threads meet at every collective) that a small step does not
# earn back: one device trained the scratch CNNs 1.26-1.33x faster at 32 px, 1.12-1.20x at 64 px
# and 1.04-1.05x at 128 px (batch 32, 2 cores: 1.8-29 GFLOPs per step, 0.9-14 per device, at
# 250-1000+ FLOPs per parameter; tools/bench_ab.py --variant=all_cpu_devices, 2026-12-03). The
# 224 px rows above have 19 (B0) to 200 (ResNet-50) GFLOPs per device and are left as they were.
CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE = 16.0
# ... and at most this many: a step this large already keeps every core busy on one device
# (its convolutions run on all of them), and a second device only adds the gradient all-reduce
# and its rendezvous. One device against 2 (batch 32, 224 px, 2026-12-04 evening; 162-703
# GFLOPs per device on 2): ResNet-18 1.01-1.03x (four A/Bs; 1.03-1.05x in separate processes),
# ResNet-50 1.02-1.04x, VGG-11 1.12x (tools/bench_ab.py --variant=all_cpu_devices). EfficientNet-B0
# (39 per device, 0.99x) and ResNet-18 at 160 px (80) keep all devices. The gain shrinks with
# the compute per parameter (VGG-11 331 FLOPs/param, ResNet-18 865, ResNet-50 931), and
# DenseNet-121 (2108, 269 GFLOPs per device) trained 1.03x faster on both devices (5 rounds,
# 6519.6 / 6692.1 ms), so only models under CPU_LARGE_STEP_MAX_FLOPS_PER_PARAM take one device.
CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE = 100.0
CPU_LARGE_STEP_MAX_FLOPS_PER_PARAM = 1500.0


def auto_cpu_mesh_size(
    num_devices: int, train_cost: Callable[[], tuple[float, float]], batch: int
) -> int:
    """How many devices the mesh of a run uses (`make_mesh`'s argument, 0 = all).

    ``num_devices`` is kept unless this process's devices are jaxcls's automatic XLA:CPU ones
    (`request_cpu_devices(auto=True)`), the run takes them all (``num_devices=0``) and runs in a
    single process. Then ``train_cost()`` (only called then) gives the model's train FLOPs per
    parameter per image and train GFLOPs per image (`summary.train_cost`): one device when the
    first is under `CPU_DATA_PARALLEL_MIN_FLOPS_PER_PARAM` or a step of ``batch`` images has under
    `CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE` per device, or over
    `CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE` with under `CPU_LARGE_STEP_MAX_FLOPS_PER_PARAM`
    FLOPs per parameter, else all. The choice and its reasons are logged."""
    devices = jax.devices()
    if not (
        _auto_cpu_mesh
        and num_devices == 0
        and len(devices) > 1
        and devices[0].platform == "cpu"
        and jax.process_count() == 1
    ):
        return num_devices
    ratio, gflops_per_image = train_cost()
    per_device = gflops_per_image * batch / len(devices)
    small = per_device < CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE
    large = (
        per_device > CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE
        and ratio < CPU_LARGE_STEP_MAX_FLOPS_PER_PARAM
    )
    n = 1 if ratio < CPU_DATA_PARALLEL_MIN_FLOPS_PER_PARAM or small or large else 0
    logging.info(
        "XLA:CPU data parallelism: %s of %d devices (%.0f train FLOPs per parameter per image, "
        "%.1f train GFLOPs per step per device; several devices pay from %.0f and between %.0f "
        "and %.0f)",
        n or "all",
        len(devices),
        ratio,
        per_device,
        CPU_DATA_PARALLEL_MIN_FLOPS_PER_PARAM,
        CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE,
        CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE,
    )
    return n


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D ('data',) mesh over all devices, or over the first ``num_devices`` of them.

    Using fewer devices than available is only allowed in a single process (it would leave another
    host's devices out of the computation).
    """
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(
                f"num_devices={num_devices} but only {len(devices)} {devices[0].platform} "
                "device(s) are available"
            )
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError("num_devices must be 0 (all) when running on several hosts")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data', the other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of the global batch; checks that it divides evenly."""
    n = mesh.devices.size
    if global_batch_size % n:
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the number of devices ({n}); "
            f"use a multiple of {n}"
        )
    return global_batch_size // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's part of a batch as one global array sharded along 'data'."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


APPLE_GPU_PLATFORMS = ("mps", "metal")  # jax-mps (the `mps` extra); the abandoned jax-metal


def apple_gpu_error(e: BaseException, platform: str | None = None) -> str | None:
    """A one-line message when ``e`` is the Apple GPU plugin failing to compile or run a program
    (an op it does not implement), else None. The message names the op error and the way out: the
    same command on the CPU. Untested on real hardware (docs/scaling.md, Apple GPUs)."""
    if platform is None:
        try:
            platform = jax.devices()[0].platform
        except RuntimeError:
            return None
    if platform.lower() not in APPLE_GPU_PLATFORMS:
        return None
    if not isinstance(e, jax.errors.JaxRuntimeError | NotImplementedError):
        return None
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return (
        f"the Apple GPU plugin ({platform}) cannot run this model: {first}; run the same command "
        "on the CPU with JAX_PLATFORMS=cpu (docs/scaling.md lists what the plugin lacks)"
    )


IDS_ENV = "JAXCLS_DEBUG_IDS_DIR"


def record_example_ids(step: int, batch: dict[str, jax.Array]) -> None:
    """Debug record, off unless the environment variable ``JAXCLS_DEBUG_IDS_DIR`` names a folder:
    appends ``<step> <id> <id> ...`` (the manifest rows of this process's part of the batch that
    train step ``step`` used) to ``ids_p<process>.txt`` there. Tests use it to check that hosts
    read disjoint shards and that a resumed run reads exactly the batches it would have read."""
    folder = os.environ.get(IDS_ENV)
    if not folder:
        return
    shards = sorted(batch["id"].addressable_shards, key=lambda s: s.index[0].start or 0)
    ids = np.concatenate([np.asarray(s.data) for s in shards]).tolist()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"ids_p{jax.process_index()}.txt"), "a") as f:
        f.write(" ".join(map(str, [step, *ids])) + "\n")


class DevicePrefetcher:
    """Iterates device batches, placing the next ones while the current step runs.

    Each item is ``(device_batch, data_state)`` where ``data_state`` is the input iterator's state
    right after that batch was drawn: saving it with a checkpoint taken after the batch's step lets a
    resumed run continue with exactly the next batch, even though this class reads ahead.
    A background thread does the host work (drawing the batch from grain, copying it to devices).
    """

    def __init__(self, iterator: Any, mesh: Mesh, size: int = 2):
        self._it = iterator
        self._mesh = mesh
        self._queue: collections.deque = collections.deque()
        self._size = max(1, size)
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._fill, daemon=True, name="device-prefetch")
        self._thread.start()

    def _fill(self) -> None:
        try:
            for batch in self._it:
                state = self._it.get_state() if hasattr(self._it, "get_state") else None
                item = (shard_batch(batch, self._mesh), state)
                with self._cond:
                    while len(self._queue) >= self._size and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    self._queue.append(item)
                    self._cond.notify_all()
        except BaseException as e:  # Surfaced in the consumer's thread.
            with self._cond:
                self._error = e
                self._cond.notify_all()
            return
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[dict[str, jax.Array], Any]]:
        return self

    def __next__(self):
        with self._cond:
            while not self._queue and self._error is None:
                self._cond.wait()
            if self._queue:
                item = self._queue.popleft()
                self._cond.notify_all()
            else:
                raise self._error
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
