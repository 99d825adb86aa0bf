"""Test setup: 8 simulated CPU devices, so multi-device code is tested on one machine.

XLA_FLAGS must be set before jax initialises its backends, hence here at import time.
Tests that want one device build a mesh over ``jax.devices()[:1]``.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The persistent compilation cache is off in tests (hermetic, nothing written to ~/.cache);
# tests/test_compile_cache.py turns it on in a temporary folder.
os.environ.setdefault("JAXCLS_COMPILATION_CACHE", "off")
