"""bench_ab's 'all_cpu_devices' variant: the same train step on all devices vs one, A/B."""

import numpy as np

from jaxcls.benchmark import ab


def test_all_cpu_devices_variant_trains_the_same_step_over_every_device_and_over_one():
    steps, states, data, first = ab._compile_both("cnn_small", "all_cpu_devices", batch=16, size=16)
    assert data["A"]["image"].sharding.mesh.devices.size == 8  # this test process's devices
    assert data["B"]["image"].sharding.mesh.devices.size == 1
    assert first["A"] > 0 and first["B"] > 0
    losses = {}
    for key in ("A", "B"):
        states[key], m = steps[key].train(states[key], data[key])
        losses[key] = float(m["loss"])
    # Same parameters, batch and step history: data parallelism changes the summation order only.
    np.testing.assert_allclose(losses["A"], losses["B"], rtol=1e-5)
