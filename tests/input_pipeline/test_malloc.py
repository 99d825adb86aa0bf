"""config.data.reuse_memory: image-sized buffers come from malloc's heap and stay there when freed
(`input_pipeline.malloc`), in the process that reads and in grain's worker processes."""

import os
import pickle
import subprocess
import sys

import pytest

from input_pipeline import malloc, pipeline, sources
from jaxcls import config_base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLIBC = malloc.is_glibc()

# A fresh process allocates and frees a 3 MB buffer (a decoded 1024x768 photo) and reports, from
# glibc's mallinfo2, the bytes it got from mmap for it and the free bytes its heap kept after.
# Modes: 'default' (malloc untouched), 'reuse' (reuse_freed_memory called twice), 'worker' (a
# pickled _Example arrives on stdin, as grain hands it to a spawned worker).
PROBE = r"""
import ctypes, pickle, sys
import numpy as np
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "reuse":
    from input_pipeline import malloc
    assert malloc.reuse_freed_memory() and malloc.reuse_freed_memory()
elif sys.argv[1] == "worker":
    example = pickle.loads(sys.stdin.buffer.read())
before = libc.mallinfo2().hblkhd
a = np.ones(3 << 20, np.uint8)
mapped = libc.mallinfo2().hblkhd - before
del a
print(mapped, libc.mallinfo2().fordblks)
"""


def _probe(mode: str, stdin: bytes = b"") -> tuple[int, int]:
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], input=stdin, capture_output=True, env=env, check=True
    )
    mapped, kept = out.stdout.decode().split()
    return int(mapped), int(kept)


def _example(reuse_memory: bool):
    return pipeline._Example("decode|resize(8)", (8, 8), sources.DirectInput(), reuse_memory)


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_image_buffers_come_from_the_heap_and_stay_there_when_freed():
    mapped, kept = _probe("default")
    assert mapped >= 3 << 20  # glibc's default: a fresh mmap, unmapped again on free...
    assert kept < 3 << 20
    mapped, kept = _probe("reuse")
    assert mapped == 0  # ...with reuse: from the heap,
    assert kept >= 3 << 20  # and kept there for the next image.


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_a_worker_sets_up_its_own_malloc_from_the_pickled_example():
    # grain spawns its workers: the example arrives pickled, and only then may it touch malloc.
    mapped, kept = _probe("worker", pickle.dumps(_example(True)))
    assert mapped == 0 and kept >= 3 << 20
    mapped, kept = _probe("worker", pickle.dumps(_example(False)))
    assert mapped >= 3 << 20 and kept < 3 << 20


def test_the_trainer_default_is_on():
    assert config_base.base_config().data.reuse_memory is True
    assert pickle.loads(pickle.dumps(_example(True))).reuse_memory is True
