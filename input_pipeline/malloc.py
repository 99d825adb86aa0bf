"""Freed image buffers stay in the process for the next image (glibc's ``mallopt``).

Every image the pipeline reads allocates a few buffers of 0.1-3 MB (the file's bytes, the decoded
pixels, the resized crop, the float32 result) and a batch of 10-40 MB. glibc's malloc serves
blocks above its mmap threshold (128 KB, raised adaptively up to the largest block freed) with
fresh ``mmap`` pages and gives freed memory above its trim threshold back to the OS, so the
buffers are often page-faulted in again. Raising both thresholds keeps the freed blocks in
malloc's free lists for the next image: one reader thread took 1.79-1.94 instead of 2.37-2.69 ms
per 500x375 JPEG (docs/performance.md, "The area resize in C++ and malloc that keeps freed
buffers").

The cost is memory: the process keeps what it freed instead of returning it, up to its peak
use. ``config.data.reuse_memory=False`` leaves malloc as it is. Where the C library is not glibc
(macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import os

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from malloc's heaps (glibc 2.36's mallopt accepts it).
MMAP_THRESHOLD = 1 << 30
# Free memory at the top of a heap is returned to the OS only above this.
TRIM_THRESHOLD = 1 << 30


def is_glibc() -> bool:
    """Whether this process runs on GNU libc (whose mallopt takes these parameters)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # No confstr, or not GNU libc.
        return False


@functools.cache
def reuse_freed_memory() -> bool:
    """Sets glibc's mmap and trim thresholds for this process (once; later calls do nothing).
    Returns whether they are set: False where the C library is not glibc or refuses them."""
    if not is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
