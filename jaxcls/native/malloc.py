"""Freed memory stays in the process for its next use (glibc's ``mallopt``).

Two kinds of work in a jaxcls process allocate and free the same large blocks over and over:

* The input pipeline: every image allocates a few buffers of 0.1-3 MB (the file's bytes, the
  decoded pixels, the resized crop, the float32 result) and a batch of 10-40 MB.
* XLA:CPU: every train step allocates its output and scratch buffers again, and its convolution
  kernels (Eigen) allocate packing buffers of up to hundreds of MB from XLA's worker threads
  (ResNet-18 at 224 px, batch 32: 58 and 231 MB blocks, each several times per step).

glibc's malloc serves blocks above its mmap threshold (128 KB, raised adaptively up to the
largest block freed) with fresh ``mmap`` pages and gives freed memory above its trim threshold
back to the OS; blocks a thread asks for come from that thread's own arena, whose heaps are capped
at 64 MB, so larger ones are mmapped whatever the threshold. Each such block is page-faulted in
again on every use: ResNet-50's train step at 224 px took 748,000 page faults (2.7 s of kernel
time of a 7.4 s step). So :func:`reuse_freed_memory` makes every thread share the main heap
(``M_ARENA_MAX=1``), serves blocks of every size from it (``M_MMAP_MAX=0``) and never trims it.
Measured on the project's 2-core machine: one reader thread took 1.79-1.94 instead of 2.37-2.69
ms per 500x375 JPEG (the two thresholds alone); train steps at 224 px ran 1.51x faster for
EfficientNet-B0, 1.29x for MobileNetV2, 1.21x for ResNet-50 (docs/performance.md, "Freed memory
stays in the process"); DenseNet-121's on one device 1.3x when blocks over 2 GB came from the heap
too ("Blocks over 2 GB").

The cost is memory: the process keeps what it freed instead of returning it, and on a fragmented
heap its peak can rise (ResNet-50's train step: 5.6 GB resident at most instead of 4.4 GB).
A heap can also grow without end (:func:`release_if_grown`, which the trainer calls after every
step, bounds it). ``config.reuse_memory=False`` leaves malloc as it is. Where the C library is not
glibc (macOS, musl) nothing changes.

Call it before JAX starts its backends: a thread that already has an arena of its own keeps it.
The trainer, the study runner and the benchmarks do (`jaxcls.main`, `jaxcls.benchmark.common`);
the input pipeline calls it too, for grain's spawned worker processes.
"""

from __future__ import annotations

import ctypes
import functools
import os

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# All threads allocate from the main heap (an arena per thread caps its heaps at 64 MB).
ARENA_MAX = 1
# No block is mmapped: blocks of every size come from the heap. (An mmap threshold cannot do it:
# mallopt takes an int, so at its largest, 2 GB, it left every larger block to a fresh mmap, and
# DenseNet-121's 3.9 GB of temporaries on one device at 224 px, batch 32, page-faulted in again on
# every step: a million faults and 3-6 s of kernel time in each 7-11 s step.)
MMAP_MAX = 0
# -1: free memory at the top of the heap is never returned to the OS (mallopt(3)).
TRIM_THRESHOLD = -1


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (whose mallopt takes these parameters)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # No confstr, or not GNU libc.
        return False


# The same settings as glibc's environment variables, for another process (a reference PyTorch
# that `tools/compare.py --torch_reuse_memory` runs as jaxcls runs): glibc reads them when the
# process starts. The trim threshold is a size_t there; its largest value means never.
ENVIRONMENT = {
    "MALLOC_ARENA_MAX": str(ARENA_MAX),
    "MALLOC_MMAP_MAX_": str(MMAP_MAX),
    "MALLOC_TRIM_THRESHOLD_": str(2**64 - 1),
}

# The heap may grow this much beyond its size at the last check before `release_if_grown` gives
# its free pages back.
GROWTH_LIMIT = 1 << 30


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes of heap (not mmapped) in all arenas
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free in the heap
            "keepcost",
        )
    ]


@functools.cache
def _glibc_function(name: str, restype, argtypes=None):
    """glibc's function ``name`` as a ctypes function (looked up once per process: the trainer
    asks for sbrk every step), or None where the C library is not glibc or lacks it (mallinfo2
    came with glibc 2.33)."""
    if not is_glibc():
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.restype = restype
    if argtypes is not None:
        function.argtypes = argtypes
    return function


@functools.cache
def reuse_freed_memory() -> bool:
    """Sets glibc's arena count, mmap count and trim threshold for this process (once; later calls
    do nothing). Returns whether they are set: False where the C library is not glibc or refuses
    them."""
    mallopt = _glibc_function("mallopt", ctypes.c_int, (ctypes.c_int, ctypes.c_int))
    if mallopt is None:
        return False
    settings = (
        (M_ARENA_MAX, ARENA_MAX),
        (M_MMAP_MAX, MMAP_MAX),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
    return all([mallopt(param, value) == 1 for param, value in settings])


def mallinfo2() -> _MallInfo2 | None:
    """glibc's ``mallinfo2()`` (``arena``: heap bytes; ``hblkhd``: bytes in mmapped blocks;
    ``fordblks``: free heap bytes), or None where it is not known (not glibc, or before 2.33)."""
    function = _glibc_function("mallinfo2", _MallInfo2)
    return None if function is None else function()


def heap_end() -> int | None:
    """The address where malloc's main heap ends (``sbrk(0)``, the program break), or None where
    not known (not glibc). With :func:`reuse_freed_memory` in effect every thread allocates from
    that heap and it only grows, so its end moves by the bytes it grew. Reading it takes well under
    a microsecond and no lock, where ``mallinfo2`` walks every free block holding the heap's lock:
    0.7 ms between train steps of the scratch CNN at 32 px (11,000 free blocks) and 2.5 ms while
    one runs (median; the step's threads wait for the lock meanwhile), measured on the project's
    2-core machine. (Where the kernel will not move the break, glibc grows the heap with mmap
    instead, which the break does not show: `release_if_grown` then does not trim.)"""
    function = _glibc_function("sbrk", ctypes.c_void_p, (ctypes.c_ssize_t,))
    return None if function is None else function(0)


_last_end = [0]  # The heap's end at the last `release_if_grown` that set a baseline.


def release_if_grown(limit: int = GROWTH_LIMIT) -> bool:
    """Bounds what keeping freed memory costs; call it once per train step. Returns whether it
    gave memory back.

    A heap that keeps its freed blocks can still grow without end: when a block of nearly the
    largest size a step allocates is freed and a small allocation then takes the front of the
    hole it left, the next such block no longer fits and the heap grows again (DenseNet-121 at
    224 px, batch 32, 2 devices: by 1.95 GB every one or two steps, 6.1 GB resident after the
    first step and 15.8 GB after the eighth). So where :func:`reuse_freed_memory` is in effect,
    once the heap has grown by more than ``limit`` since the last check that set a baseline,
    ``malloc_trim(0)`` gives the free pages of all its holes back to the OS, and the next step
    page-faults what it reuses of them (one slow step). Other models' heaps settle, and whether
    it fires at all depends on the run's heap layout (measured, 2 devices at 224 px: EfficientNet-B0
    not in 8 steps; ResNet-50 not in 16 steps in one run, at step 6 of 6 in another; MobileNetV2
    once, at step 5 of 8). A check reads where the heap ends (:func:`heap_end`), under a
    microsecond: asking ``mallinfo2`` for the heap's size instead made the scratch CNNs' train
    steps at 32 px 7-8% slower (19.71 vs 18.17 ms for cnn, 12.72 vs 11.85 ms for cnn_small,
    medians of 10 alternating loops of 50 steps)."""
    if not (reuse_freed_memory.cache_info().currsize and reuse_freed_memory()):
        return False
    end = heap_end()
    if end is None:
        return False
    if not _last_end[0]:
        _last_end[0] = end
        return False
    if end < _last_end[0] + limit:
        return False
    _glibc_function("malloc_trim", ctypes.c_int, (ctypes.c_size_t,))(0)
    # The baseline is the end before the trim (the trim may lower it): a heap that grows back to
    # the size it needed is left alone; only growth beyond it by ``limit`` trims again.
    _last_end[0] = end
    return True
