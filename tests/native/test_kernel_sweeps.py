"""Native kernels over every small geometry, built with AddressSanitizer: no read or write outside
the buffers, and the results equal a plain reference.

- max_pool.cc's row functions (maps of 1-6 pixels, windows of 1-4, strides 1-3, every padding):
  the gradient equals a scatter to each window's winner (a window wider than the map and its
  padding once wrote one pixel past the gradient's row).
- dense_conv.cc's Winograd F(2x2, 3x3) forward pass and weight gradient (maps of 1-9 pixels, odd
  and even, 1-70 channels, vector tails, channel groups, every padding up to 3): equal to float64
  direct sums within 1e-5 of the result's largest value.
- dense_conv.cc's forward pass over few output pixels (ForwardFew: 1-2 images of 1-5 x 1-4
  pixels, 1x1, 3x3 and 2x3 kernels, strides 1-2, paddings, 1-130 channels: vector tails, a second
  slice of input channels, pixel blocks cut short, runs split as for 1-3 threads): equal to the
  packed-panel forward pass to the bit and to float64 direct sums within 1e-5.
- depthwise.cc's forward pass with its output's moments, input gradient and kernel gradient (maps of 1-6 pixels, kernels
  1x1-5x5 and 3x5, strides 1-3, paddings, 3/37/70 channels: vector tails and a second chunk of
  channels), alone and with BatchNorm's apply and a ReLU6 or ReLU inside them (the backward's
  masked input gradient and its two sums too): equal to float64 direct sums within 1e-5 of each
  result's largest value.
- pointwise.cc's both gradients of a 1x1 convolution (1-97 pixels an image around its 32-pixel
  chunks, 1-56 input and 1-33 output channels around its vectors and register tiles), the output
  gradient read or built from a BatchNorm + ReLU6's or ReLU's (`jaxcls_pointwise_bn_bwd`): equal
  to float64 sums within 1e-5 of each result's largest value.
"""

import os
import shutil
import subprocess

import pytest

from jaxcls import native

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize(
    "source,min_geometries",
    [
        ("max_pool_sweep.cc", 10000),
        ("winograd_sweep.cc", 10000),
        ("depthwise_sweep.cc", 50000),
        ("few_pixels_sweep.cc", 6000),
        ("pointwise_sweep.cc", 3000),
    ],
)
def test_every_small_geometry_stays_in_bounds_and_matches_a_reference(
    source, min_geometries, tmp_path
):
    import jax

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler")
    binary = tmp_path / "sweep"
    cmd = [cxx, "-O1", "-g", "-fsanitize=address", "-march=native", "-std=c++17"]
    cmd += ["-I", native.HERE, "-I", jax.ffi.include_dir()]
    cmd += [os.path.join(HERE, source), "-o", str(binary)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0 and "sanitize" in built.stderr:
        pytest.skip(f"no AddressSanitizer: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-2000:]
    ran = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    geometries, mismatches = (int(v) for v in ran.stdout.split()[1::2])
    assert geometries > min_geometries and mismatches == 0, ran.stdout[-3000:]
