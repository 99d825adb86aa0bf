"""Native CPU code compiled on first use: XLA FFI kernels for the depthwise convolution and the
stem convolution (few input channels), and the input pipeline's area resize. (`malloc` sets up
glibc's malloc for the process.)

XLA:CPU emits reductions as scalar loops and cannot fuse zero padding into a vectorised stencil,
so the depthwise convolution of EfficientNet/MobileNet - above all its kernel gradient - is far
slower in pure jax.numpy than PyTorch's hand-written kernels (tools/bench_ops.py).
``depthwise.cc`` holds plain C++ loops for it, vectorised by the compiler and spread over XLA's
intra-op thread pool; it also runs them with BatchNorm's apply and a ReLU or ReLU6 computed on the
input as it is read, and their backward sums taken as the input gradient is written
(`batch_stats.normalize_act_depthwise_train`); in training their forward pass also sums its output
for the BatchNorm after it (`depthwise.depthwise_conv_moments`). ``stem_conv.cc`` holds the forward
pass and weight gradient of a dense convolution with 1-4 input channels (a network's first layer on
RGB or grey images), which XLA:CPU's GEMM-panel convolution runs at a fraction of its usual rate
(`jaxcls.models.conv`). ``dense_conv.cc`` holds the forward pass (also the input gradient, on the
flipped kernel) and the weight gradient of other dense convolutions, register-tiled, for the 3x3
layers of up to 128 channels where XLA's image-patch convolution was slower. ``pointwise.cc`` holds
both gradients of a 1x1 convolution with few input channels in one pass over its output gradient
(MobileNetV2's and EfficientNet's expansions), which it can also build from the BatchNorm + ReLU6
after the convolution (`batch_stats.expand_normalize_act_depthwise_train`). ``channel_sums.cc``
holds BatchNorm's per-channel sums in training (`jaxcls.models.batch_stats`), one pass over the
activations each way where XLA made two. ``max_pool.cc`` holds max pooling and its gradient
(`jaxcls.models.pool`), one pass each where XLA padded, reduced and compared the window's taps in
separate loops, and the same with BatchNorm's apply and backward inside
(`batch_stats.normalize_max_pool_train`). All are built into one library, with ``parallel_for.h``
and ``simd.h``.

``resize.cc`` shrinks uint8 images with OpenCV's INTER_AREA weights, 2-3x faster than OpenCV's
general (non-integer scale) path; the input pipeline calls it through ctypes
(`resize_area_function`) and uses OpenCV where it is unavailable.

Each source is compiled once per machine with the system C++ compiler (``$CXX`` or ``g++``; the
kernels against the XLA FFI headers that jaxlib ships) into a cache directory
(``$JAXCLS_NATIVE_CACHE``, default ``~/.cache/jaxcls/native``), keyed by the source and the CPU
(and the jaxlib version, for the kernels). Nothing is needed at
install time. Where no compiler is found or the build fails, :func:`available` is False, one
warning says why, and the callers use their pure-JAX form. ``JAXCLS_NATIVE=0`` turns the native
code off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# The XLA FFI kernels: one library, built against jaxlib's FFI headers.
SOURCES = tuple(
    os.path.join(HERE, n)
    for n in (
        "depthwise.cc",
        "stem_conv.cc",
        "dense_conv.cc",
        "channel_sums.cc",
        "max_pool.cc",
        "pointwise.cc",
    )
)
HEADERS = tuple(os.path.join(HERE, n) for n in ("parallel_for.h", "simd.h"))
RESIZE_SOURCES = (os.path.join(HERE, "resize.cc"),)
TARGETS = {
    "jaxcls_depthwise_fwd": "JaxclsDepthwiseFwd",
    "jaxcls_depthwise_fwd_moments": "JaxclsDepthwiseFwdMoments",
    "jaxcls_depthwise_bwd": "JaxclsDepthwiseBwd",
    "jaxcls_depthwise_affine_fwd": "JaxclsDepthwiseAffineFwd",
    "jaxcls_depthwise_affine_bwd": "JaxclsDepthwiseAffineBwd",
    "jaxcls_stem_conv_fwd": "JaxclsStemConvFwd",
    "jaxcls_stem_conv_wgrad": "JaxclsStemConvWgrad",
    "jaxcls_conv_fwd": "JaxclsConvFwd",
    "jaxcls_conv_wgrad": "JaxclsConvWgrad",
    "jaxcls_pointwise_bwd": "JaxclsPointwiseBwd",
    "jaxcls_pointwise_bn_bwd": "JaxclsPointwiseBnBwd",
    "jaxcls_channel_moments": "JaxclsChannelMoments",
    "jaxcls_channel_dots": "JaxclsChannelDots",
    "jaxcls_channel_dots_clipped": "JaxclsChannelDotsClipped",
    "jaxcls_image_channel_dots": "JaxclsImageChannelDots",
    "jaxcls_max_pool_fwd": "JaxclsMaxPoolFwd",
    "jaxcls_max_pool_bwd": "JaxclsMaxPoolBwd",
    "jaxcls_max_pool_affine_fwd": "JaxclsMaxPoolAffineFwd",
    "jaxcls_max_pool_affine_bwd": "JaxclsMaxPoolAffineBwd",
}

log = logging.getLogger(__name__)


def _cpu_signature() -> str:
    """The CPU model and feature flags (the library is built with -march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _cache_dir() -> str:
    return os.environ.get("JAXCLS_NATIVE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxcls", "native"
    )


def _flags(sources: tuple[str, ...]) -> list[str]:
    """The compiler's flags for ``sources`` (part of the cache key). The kernels are built with
    ``-ffp-contract=off``: a multiply-add is fused only where the source says so (``MulAdd``), so
    that every copy of a loop the compiler makes (one inlined into the thread pool's workers, one
    into the calling thread) rounds alike. Left to the compiler, BatchNorm's backward sums were
    fused in one copy and not in the other and differed in the last bit from run to run as the
    threads took the blocks in a different order."""
    flags = ["-O3", "-march=native", "-std=c++17", "-fPIC"]
    return flags + ["-ffp-contract=off"] if sources == SOURCES else flags


def library_path(sources: tuple[str, ...] = SOURCES) -> str:
    """Where the compiled library for ``sources`` and this CPU (and jaxlib, for the XLA FFI
    kernels built against its headers) lives, or will."""
    h = hashlib.sha256()
    kernels = sources == SOURCES
    for name in sources + (HEADERS if kernels else ()):
        with open(name, "rb") as f:
            h.update(f.read())
    if kernels:
        import jaxlib

        h.update(jaxlib.__version__.encode())
    h.update(platform.machine().encode())
    h.update(_cpu_signature().encode())
    h.update(" ".join(_flags(sources)).encode())
    return os.path.join(_cache_dir(), f"jaxcls_native_{h.hexdigest()[:16]}.so")


def _run(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(cmd: list[str], proc: subprocess.Popen) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-2000:]}")


def _compile(path: str, sources: tuple[str, ...] = SOURCES) -> None:
    """Compiles each source to an object file, all at once (the kernels: 8-9 s on 2 cores
    instead of 18 s one after another), then links them into ``path``."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    flags = _flags(sources)
    if sources == SOURCES:  # The XLA FFI headers jaxlib ships.
        import jax

        flags += ["-I", jax.ffi.include_dir()]
    # Build in a private directory, then rename: concurrent first uses (pytest workers) never load
    # a half-written library.
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
        objects = [os.path.join(work, f"{i}.o") for i in range(len(sources))]
        cmds = [[cxx, *flags, "-c", src, "-o", obj] for src, obj in zip(sources, objects)]
        procs = [_run(cmd) for cmd in cmds]
        try:
            for cmd, proc in zip(cmds, procs):
                _wait(cmd, proc)
        finally:
            for proc in procs:  # after a failure, stop the others
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        lib = os.path.join(work, "lib.so")
        link = [cxx, "-shared", *objects, "-o", lib]
        _wait(link, _run(link))
        os.replace(lib, path)


def _disabled() -> bool:
    return os.environ.get("JAXCLS_NATIVE", "1") == "0"


def _library(sources: tuple[str, ...]) -> ctypes.CDLL:
    """Builds ``sources`` (if needed) into one library and loads it; raises when either fails."""
    path = library_path(sources)
    if not os.path.exists(path):
        log.info("compiling jaxcls native code into %s", path)
        _compile(path, sources)
    return ctypes.CDLL(path)


@functools.cache
def _load() -> tuple[bool, str]:
    """Builds (if needed), loads and registers the kernels once per process: (ok, why not)."""
    import jax

    if _disabled():
        return False, "JAXCLS_NATIVE=0"
    try:
        lib = _library(SOURCES)
        for target, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )
    except Exception as e:  # noqa: BLE001 - any failure means: use the pure-JAX form
        log.warning("jaxcls native CPU kernels unavailable, using pure JAX: %s", e)
        return False, str(e)
    return True, ""


def available() -> bool:
    """True when the native CPU kernels are built and registered (compiles them on first call)."""
    return _load()[0]


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    return _load()[1]


@functools.cache
def resize_area_function():
    """``jaxcls_resize_area_u8`` of ``resize.cc`` as a ctypes function (built on first call), or
    None where it cannot be built (one warning says why). ctypes releases the GIL during the call.

    Signature: ``(src, src_h, src_w, src_row_stride_bytes, channels, dst, dst_h, dst_w) -> int``
    (pointers as integers; 0 = done)."""
    if _disabled():
        return None
    try:
        fn = _library(RESIZE_SOURCES).jaxcls_resize_area_u8
    except Exception as e:  # noqa: BLE001 - any failure means: use OpenCV
        log.warning("jaxcls native resize unavailable, using OpenCV: %s", e)
        return None
    c = ctypes
    fn.argtypes = (c.c_void_p, c.c_int, c.c_int, c.c_int64, c.c_int, c.c_void_p, c.c_int, c.c_int)
    fn.restype = c.c_int
    return fn
