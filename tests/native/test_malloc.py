"""config.reuse_memory: large blocks come from malloc's heap and stay there when freed
(`jaxcls.native.malloc`), in the trainer's process, for blocks its threads allocate as XLA's do,
and in grain's worker processes."""

import os
import pickle
import subprocess
import sys

import pytest

from input_pipeline import pipeline, sources
from jaxcls import config_base
from jaxcls.native import malloc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLIBC = malloc.is_glibc()

# A fresh process allocates and frees a block of argv[2] MB (3: a decoded 1024x768 photo; 100:
# a packing buffer of XLA's convolutions; 3000: the temporaries of a large model's step), in the
# main thread or (argv[3] == 'thread') in a new thread, and reports from glibc's mallinfo2 the
# bytes it got from mmap for it and the free bytes the heap kept after. Modes: 'default' (malloc
# untouched: importing the module changes nothing), 'reuse' (reuse_freed_memory called twice),
# 'benchmark' (what the benchmark tools call first), 'worker' (a pickled _Example arrives on
# stdin, as grain hands it to a spawned worker).
PROBE = r"""
import pickle, sys, threading
import numpy as np
from jaxcls.native import malloc
mode, size = sys.argv[1], int(sys.argv[2]) << 20
if mode == "reuse":
    assert malloc.reuse_freed_memory() and malloc.reuse_freed_memory()
elif mode == "benchmark":
    from jaxcls.benchmark import common
    common.prepare_process()
elif mode == "worker":
    example = pickle.loads(sys.stdin.buffer.read())
out = []
def allocate():
    before = malloc.mallinfo2().hblkhd
    if size > 2**31:  # Over 2 GB: malloc'd and freed without touching a page (no memory used).
        import ctypes
        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        block = libc.malloc(size)
        assert block, "malloc failed"
        out.append(malloc.mallinfo2().hblkhd - before)
        libc.free(block)
        return
    a = np.ones(size, np.uint8)
    out.append(malloc.mallinfo2().hblkhd - before)
    del a
if sys.argv[3] == "thread":
    t = threading.Thread(target=allocate)
    t.start()
    t.join()
else:
    allocate()
print(out[0], malloc.mallinfo2().fordblks)
"""


def _probe(
    mode: str, mb: int = 3, where: str = "main", stdin: bytes = b"", env: dict | None = None
) -> tuple[int, int]:
    env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(mb), where],
        input=stdin,
        capture_output=True,
        env=env,
        check=True,
    )
    mapped, kept = out.stdout.decode().split()
    return int(mapped), int(kept)


def _example(reuse_memory: bool):
    return pipeline._Example("decode|resize(8)", (8, 8), sources.DirectInput(), reuse_memory)


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_image_buffers_come_from_the_heap_and_stay_there_when_freed():
    mapped, kept = _probe("default")
    assert mapped >= 3 << 20  # glibc's default: a fresh mmap, unmapped again on free...
    assert kept < 3 << 20
    mapped, kept = _probe("reuse")
    assert mapped == 0  # ...with reuse: from the heap,
    assert kept >= 3 << 20  # and kept there for the next image.


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_blocks_a_thread_allocates_come_from_the_shared_heap():
    # XLA's worker threads allocate the convolutions' packing buffers (up to hundreds of MB).
    # By default a thread's arena caps its heaps at 64 MB, so such a block is always mmapped,
    # whatever the threshold; with reuse every thread shares the main heap, which keeps it.
    mapped, kept = _probe("default", 100, "thread")
    assert mapped >= 100 << 20 and kept < 100 << 20
    for mode in ("reuse", "benchmark"):  # The benchmarks set the process up as the trainer.
        mapped, kept = _probe(mode, 100, "thread")
        assert mapped == 0 and kept >= 100 << 20, mode


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_blocks_over_2_gb_come_from_the_heap_too():
    # mallopt's mmap threshold stops at 2 GB (an int): DenseNet-121's 3.9 GB of temporaries at
    # 224 px on one device were mmapped and page-faulted in again on every step until no block
    # was mmapped at all (M_MMAP_MAX=0).
    mapped, kept = _probe("default", 3000, "thread")
    assert mapped >= 3000 << 20 and kept < 3000 << 20
    mapped, kept = _probe("reuse", 3000, "thread")
    assert mapped == 0 and kept >= 3000 << 20
    mapped, kept = _probe("default", 3000, "thread", env=malloc.ENVIRONMENT)  # as for PyTorch
    assert mapped == 0 and kept >= 3000 << 20


@pytest.mark.skipif(not GLIBC, reason="glibc's environment variables")
def test_the_environment_variables_set_another_process_up_the_same_way():
    # What `tools/compare.py --torch_reuse_memory` gives the reference PyTorch: nothing is called
    # in that process, glibc reads the settings from its environment at start.
    mapped, kept = _probe("default", 100, "thread", env=malloc.ENVIRONMENT)
    assert mapped == 0 and kept >= 100 << 20


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_a_worker_sets_up_its_own_malloc_from_the_pickled_example():
    # grain spawns its workers: the example arrives pickled, and only then may it touch malloc.
    mapped, kept = _probe("worker", stdin=pickle.dumps(_example(True)))
    assert mapped == 0 and kept >= 3 << 20
    mapped, kept = _probe("worker", stdin=pickle.dumps(_example(False)))
    assert mapped >= 3 << 20 and kept < 3 << 20


# A fresh process sets a baseline, grows its heap by a 100 MB block and frees it, then asks
# `release_if_grown` (with a 64 MB limit) to bound the heap: whether it gave memory back, the
# resident bytes that went, and whether a second call (no growth since) gives anything back.
GROWTH = r"""
import sys
import numpy as np
from jaxcls.native import malloc
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
if sys.argv[1] == "reuse":
    malloc.reuse_freed_memory()
malloc.release_if_grown(64 << 20)
a = np.ones(100 << 20, np.uint8)
del a
before = resident()
released = malloc.release_if_grown(64 << 20)
print(released, before - resident(), malloc.release_if_grown(64 << 20))
"""


@pytest.mark.skipif(not GLIBC or not os.path.exists("/proc/self/statm"), reason="glibc, Linux")
def test_a_heap_that_grew_gives_its_free_pages_back():
    def run(mode):
        out = subprocess.run(
            [sys.executable, "-c", GROWTH, mode],
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=REPO),
            check=True,
        )
        released, freed, again = out.stdout.decode().split()
        return released == "True", int(freed), again == "True"

    released, freed, again = run("reuse")
    assert released and freed >= 90 << 20  # The kept 100 MB went back to the OS...
    assert not again  # ...once: a heap that has not grown since is left alone.
    released, freed, again = run("default")
    assert not released and not again  # Without reuse the block was unmapped on free anyway.


def test_the_trainer_default_is_on():
    assert config_base.base_config().reuse_memory is True
    assert pickle.loads(pickle.dumps(_example(True))).reuse_memory is True


@pytest.mark.skipif(not GLIBC, reason="mallopt settings are glibc's")
def test_the_trainer_sets_malloc_up_unless_told_not_to(tmp_path):
    # An unknown model stops the run right after the process set-up; the log shows the choice.
    def run(*overrides):
        return subprocess.run(
            [sys.executable, "-m", "jaxcls.main", "--config=configs/cnn.py"]
            + [f"--workdir={tmp_path}", "--config.model.name=nope", *overrides],
            cwd=REPO,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
            capture_output=True,
            text=True,
            timeout=300,
        )

    line = "malloc keeps freed memory in the process"
    on, off = run(), run("--config.reuse_memory=False")
    assert on.returncode == off.returncode == 2, on.stderr[-2000:]
    assert line in on.stderr
    assert line not in off.stderr
