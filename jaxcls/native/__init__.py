"""Native XLA:CPU kernels, compiled on first use and registered as XLA FFI targets.

XLA:CPU emits reductions as scalar loops and cannot fuse zero padding into a vectorised stencil,
so the depthwise convolution of EfficientNet/MobileNet - above all its kernel gradient - is far
slower in pure jax.numpy than PyTorch's hand-written kernels (tools/bench_ops.py).
``depthwise.cc`` holds plain C++ loops for it, vectorised by the compiler and spread over XLA's
intra-op thread pool.

The source is compiled once per machine with the system C++ compiler (``$CXX`` or ``g++``) against
the XLA FFI headers that jaxlib ships, into a cache directory (``$JAXCLS_NATIVE_CACHE``, default
``~/.cache/jaxcls/native``), keyed by the source, the jaxlib version and the CPU. Nothing is needed at
install time. Where no compiler is found or the build fails, :func:`available` is False, one
warning says why, and the callers use their pure-JAX form. ``JAXCLS_NATIVE=0`` turns the native
kernels off.
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

import jax
import jaxlib

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "depthwise.cc")
TARGETS = {
    "jaxcls_depthwise_fwd": "JaxclsDepthwiseFwd",
    "jaxcls_depthwise_bwd": "JaxclsDepthwiseBwd",
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


def library_path() -> str:
    """Where the compiled library for this source, jaxlib and CPU lives (or will)."""
    h = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        h.update(f.read())
    h.update(jaxlib.__version__.encode())
    h.update(platform.machine().encode())
    h.update(_cpu_signature().encode())
    return os.path.join(_cache_dir(), f"jaxcls_native_{h.hexdigest()[:16]}.so")


def _compile(path: str) -> None:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Compile to a private file, then rename: concurrent first uses (pytest workers) never load a
    # half-written library.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
    os.close(fd)
    cmd = [
        cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC",
        "-I", jax.ffi.include_dir(), SOURCE, "-o", tmp,
    ]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@functools.cache
def _load() -> tuple[bool, str]:
    """Builds (if needed), loads and registers the kernels once per process: (ok, why not)."""
    if os.environ.get("JAXCLS_NATIVE", "1") == "0":
        return False, "JAXCLS_NATIVE=0"
    try:
        path = library_path()
        if not os.path.exists(path):
            log.info("compiling jaxcls native kernels into %s", path)
            _compile(path)
        lib = ctypes.CDLL(path)
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
