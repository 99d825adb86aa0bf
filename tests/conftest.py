"""Test setup: 8 simulated CPU devices, so multi-device code is tested on one machine.

XLA_FLAGS must be set before jax initialises its backends, hence here at import time.
Tests that want one device build a mesh over ``jax.devices()[:1]``.
"""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent compilation cache for the session, in a temporary folder (nothing is written to
# ~/.cache): the many runs of the same tiny configs, in this process and in the processes tests
# start, compile each program once. tests/test_compile_cache.py uses folders of its own.
# pytest-xdist workers (which inherit the environment of the pytest process that starts them) each
# get a folder of their own inside it: JAX writes a cache entry in place, not through a rename, so
# two workers compiling the same program at once could read each other's half-written entries.
if "JAXCLS_COMPILATION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxcls_tests_xla_")
    os.environ["JAXCLS_COMPILATION_CACHE"] = os.environ["JAXCLS_TESTS_XLA_ROOT"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
elif os.environ.get("PYTEST_XDIST_WORKER") and (
    os.environ["JAXCLS_COMPILATION_CACHE"] == os.environ.get("JAXCLS_TESTS_XLA_ROOT")
):
    os.environ["JAXCLS_COMPILATION_CACHE"] = os.path.join(
        os.environ["JAXCLS_TESTS_XLA_ROOT"], os.environ["PYTEST_XDIST_WORKER"]
    )
