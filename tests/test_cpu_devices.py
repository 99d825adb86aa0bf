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


def test_auto_mesh_uses_one_cpu_device_for_little_compute_per_parameter_or_a_small_or_large_step(
    monkeypatch,
):
    asked = []

    # By default a step of 32 images on the 8 devices between the floor and the ceiling below.
    middle = (
        (
            parallel.CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE
            + parallel.CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE
        )
        / 2
        * 8
        / 32
    )

    def cost(ratio, gflops_per_image=middle):
        return lambda: asked.append(ratio) or (ratio, gflops_per_image)

    # The user's own device count (XLA_FLAGS, as in this test process) is always used whole.
    monkeypatch.setattr(parallel, "_auto_cpu_mesh", False)
    assert parallel.auto_cpu_mesh_size(0, cost(1.0), 32) == 0
    monkeypatch.setattr(parallel, "_auto_cpu_mesh", True)  # as if jaxcls had made the devices
    limit = parallel.CPU_DATA_PARALLEL_MIN_FLOPS_PER_PARAM
    assert parallel.auto_cpu_mesh_size(0, cost(limit / 2), 32) == 1
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2), 32) == 0
    assert parallel.auto_cpu_mesh_size(4, cost(1.0), 32) == 4  # an explicit num_devices is kept
    assert asked == [limit / 2, limit * 2]  # the model is only analysed when the choice is open
    # Enough compute per parameter, but the step is split over the 8 devices: a step of 32 images
    # with half (twice) the floor per device trains on one device (on all).
    floor = parallel.CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE * 8 / 32
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2, floor / 2), 32) == 1
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2, floor * 2), 32) == 0
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2, floor * 2), 8) == 1  # a 4x smaller batch
    # A step so large that one device's convolutions already use every core: one device.
    ceiling = parallel.CPU_DATA_PARALLEL_MAX_STEP_GFLOPS_PER_DEVICE * 8 / 32
    assert ceiling > floor
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2, ceiling / 2), 32) == 0
    assert parallel.auto_cpu_mesh_size(0, cost(limit * 2, ceiling * 2), 32) == 1
    # ... unless the model has so much compute per parameter that the all-reduce is cheap.
    dense = parallel.CPU_LARGE_STEP_MAX_FLOPS_PER_PARAM * 2
    assert parallel.auto_cpu_mesh_size(0, cost(dense, ceiling * 2), 32) == 0


def test_trainer_trains_on_one_of_its_automatic_cpu_devices_when_that_is_faster(
    monkeypatch, tmp_path
):
    """cnn_small at 8 px has about 38 train FLOPs per parameter per image (one device is faster);
    at 32 px about 630, but a step of 32 images only 0.5 GFLOPs (one device); with a floor that
    step passes, all devices. The run trains, evaluates and records its device count."""
    import json

    from jaxcls.trainer import run as train
    from jaxcls.trainer import setup
    from tests.small import small_config

    monkeypatch.setattr(parallel, "_auto_cpu_mesh", True)
    results = train.run(small_config(num_epochs=1, **{"data.image_size": 8}), str(tmp_path))
    on_disk = json.load(open(tmp_path / "results.json"))
    assert on_disk["num_devices"] == 1
    assert results["compilations"]["train"] == 1
    assert on_disk["splits"]["test"]["accuracy"] > 0.2  # chance is 0.1
    run, _ = setup.setup_run(small_config(**{"data.image_size": 32}), str(tmp_path / "b"))
    assert run.mesh.devices.size == 1
    monkeypatch.setattr(parallel, "CPU_DATA_PARALLEL_MIN_STEP_GFLOPS_PER_DEVICE", 0.05)
    run, _ = setup.setup_run(small_config(**{"data.image_size": 32}), str(tmp_path / "c"))
    assert run.mesh.devices.size == 8
