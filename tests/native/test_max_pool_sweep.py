"""The native max-pool kernels' row functions over every small geometry (maps of 1-6 pixels,
windows of 1-4, strides 1-3, every padding), built with AddressSanitizer: no read or write outside
the buffers (a window wider than the map and its padding once wrote one pixel past the gradient's
row), and the gradient equals a plain scatter to each window's winner."""

import os
import shutil
import subprocess

import pytest

from jaxcls import native

HERE = os.path.dirname(os.path.abspath(__file__))


def test_every_small_max_pool_geometry_stays_in_bounds_and_matches_a_scatter(tmp_path):
    import jax

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler")
    binary = tmp_path / "sweep"
    cmd = [cxx, "-O1", "-g", "-fsanitize=address", "-march=native", "-std=c++17"]
    cmd += ["-I", native.HERE, "-I", jax.ffi.include_dir()]
    cmd += [os.path.join(HERE, "max_pool_sweep.cc"), "-o", str(binary)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0 and "sanitize" in built.stderr:
        pytest.skip(f"no AddressSanitizer: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-2000:]
    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    geometries, mismatches = (int(v) for v in ran.stdout.split()[1::2])
    assert geometries > 10000 and mismatches == 0
