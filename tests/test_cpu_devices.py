"""One XLA:CPU device per core for CPU training (config.cpu_devices), asked for before JAX starts."""

import os
import subprocess
import sys

from jaxcls.trainer import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_device_count_is_one_per_core_dividing_the_batches():
    assert parallel.cpu_device_count(0, [32, 64], cores=2) == 2
    assert parallel.cpu_device_count(0, [30, 0], cores=4) == 3  # 4 does not divide 30
    assert parallel.cpu_device_count(0, [32, 50], cores=8) == 2  # must divide both
    assert parallel.cpu_device_count(0, [7], cores=6) == 1
    assert parallel.cpu_device_count(3, [32], cores=2) == 3  # an explicit count is kept
    assert parallel.cpu_device_count(0, [], cores=5) == 5


def test_request_cpu_devices_sets_the_flag_before_jax_starts_and_respects_the_users():
    probe = (
        "from jaxcls.trainer import parallel; import sys; set_ = parallel.request_cpu_devices(3); "
        "import jax; print(set_, len(jax.devices('cpu')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = REPO
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "3"]
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # the user's own count wins
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "2"]
