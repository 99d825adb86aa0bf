"""bench_ab's variants: all devices vs one (A/B of one train step), both sides over the trainer's
devices, every tap vs the live ones."""

import os
import re
import statistics

import numpy as np
import pytest

from jaxcls.benchmark import ab


def _assert_switches(variant: str, probe, current, reference) -> None:
    """``probe()`` gives ``current`` with the current code, ``reference`` while ``variant``'s side
    A is in effect, and ``current`` again after it (the variant undoes itself)."""
    assert probe() == current
    with ab.variant_context(variant):
        assert probe() == reference
    assert probe() == current


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


def test_both_sides_can_train_data_parallel_over_the_trainers_devices():
    steps, states, data, _ = ab._compile_both("cnn_small", "conv_xla", batch=16, size=16, devices=2)
    for key in ("A", "B"):
        assert data[key]["image"].sharding.mesh.devices.size == 2
        states[key], m = steps[key].train(states[key], data[key])
        assert np.isfinite(float(m["loss"]))


def test_the_report_gives_each_sides_step_times_and_the_cpu_time_the_host_took(capsys):
    # Steps of some ms each: /proc/stat counts in ticks of 10 ms per CPU, so each side's steps
    # together must span several ticks for a share to be known.
    assert ab.run(["cnn_small"], variant="conv_xla", batch=16, size=32, rounds=8) == 0
    out = capsys.readouterr().out
    assert "B is" in out
    for side in ("A", "B"):
        times = [float(t) for t in out.split(f"{side} times (ms):")[1].split("\n")[0].split()]
        assert len(times) == 8 and min(times) > 0
        # The headline is the median of the steps listed, in the same unit.
        said = float(re.search(rf"{side} ([\d.]+) ms/step", out).group(1))
        assert abs(said - statistics.median(times)) <= 0.15
    if os.path.exists("/proc/stat"):  # Linux: steal of each side, in percent
        said = r"CPU steal \(what the host took while each side ran\): A \d+%, B \d+%"
        assert re.search(said, out)


@pytest.mark.parametrize(
    "args,says",
    [
        (["--variant=all_cpu_devices", "--cpu_devices=2"], "leave --cpu_devices out"),
        (["--cpu_devices=3"], "--batch=32 is not divisible by --cpu_devices=3"),
    ],
)
def test_bench_ab_refuses_device_counts_it_cannot_run(capsys, args, says):
    from tools import bench_ab

    with pytest.raises(SystemExit) as e:
        bench_ab.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and err.count("\n") == 1


def test_conv_all_taps_variant_gathers_every_tap_again():
    import jax

    from tests.models.test_conv import patches_contraction

    x, w = jax.numpy.ones((2, 1, 1, 4)), jax.numpy.ones((3, 3, 4, 5))
    contraction = lambda: patches_contraction(x, w, ((1, 1), (1, 1)))  # noqa: E731

    # now the centre tap only (4 input channels), all 9 taps in the variant
    _assert_switches("conv_all_taps", contraction, current=4, reference=9 * 4)


def test_winograd_wgrad_narrow_variant_puts_winograds_weight_gradient_back_below_32_channels():
    from jaxcls.models import conv

    def narrow():  # cnn_small's 16 -> 32 convolution at 16x16, batch 32
        return conv.winograd_fits(32, (16, 16), (3, 3, 16, 32), 1, weight_gradient=True)

    _assert_switches("winograd_wgrad_narrow", narrow, current=False, reference=True)


def test_silu_autodiff_variant_traces_jax_nn_silu_without_the_custom_gradient():
    import jax

    from jaxcls.models import layers

    def custom():  # a new function each time: no trace cached from the other setting
        return "custom_vjp" in str(jax.make_jaxpr(lambda x: layers.silu(x))(jax.numpy.ones(3)))

    _assert_switches("silu_autodiff", custom, current=True, reference=False)


def test_pool_conv_as_written_variant_convolves_densenets_transition_before_its_pool():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import densenet

    t = densenet.Transition(8, 4, bn=dict(eps=1e-5), dtype=jnp.float32, rngs=nnx.Rngs(0))

    def pooled_first():  # the convolution's input is the pooled 2x2 map
        jaxpr = str(jax.make_jaxpr(lambda x: t(x, train=False))(jnp.ones((1, 4, 4, 8))))
        return "f32[1,2,2,8]" in jaxpr

    _assert_switches("pool_conv_as_written", pooled_first, current=True, reference=False)


def test_pool_conv_as_written_variant_pools_inceptions_branch_input_again():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import inception

    cfg = dict(dtype=jnp.float32, eps=1e-3, bn_scale=True, count_include_pad=True)
    block = inception.InceptionA(16, 4, cfg=cfg, rngs=nnx.Rngs(0))

    def pooled_width():  # channels of the branch's 3x3 average pool
        jaxpr = jax.make_jaxpr(lambda x: block(x, train=False))(jnp.ones((1, 5, 5, 16)))
        (eqn,) = [e for e in jaxpr.eqns if e.primitive.name == "reduce_window_sum"]
        return eqn.outvars[0].aval.shape[-1]

    _assert_switches("pool_conv_as_written", pooled_width, current=4, reference=16)


def test_bn_act_unfused_variant_takes_the_relu_gradient_outside_batch_norm_again():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import layers

    bn = layers.BatchNorm(8, rngs=nnx.Rngs(0))

    def fused():  # a new function each time: no trace cached from the other setting
        def loss(x):
            return jnp.sum(nnx.clone(bn).activated(x, "relu", use_running_average=False))

        return "jaxcls_channel_dots_clipped" in str(
            jax.make_jaxpr(jax.grad(loss))(jnp.ones((2, 3, 3, 8)))
        )

    if not layers.batch_stats.native.available():
        pytest.skip("native kernels unavailable")
    _assert_switches("bn_act_unfused", fused, current=True, reference=False)


def test_inception_pad_first_variant_pads_a_units_input_before_its_convolution_again():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import inception

    cfg = dict(dtype=jnp.float32, eps=1e-3, bn_scale=True)
    unit = inception.ConvNormAct(4, 4, 3, padding=1, cfg=cfg, rngs=nnx.Rngs(0))

    def padded_first():  # a new function each time: no trace cached from the other setting
        return "pad[" in str(jax.make_jaxpr(lambda x: unit.conv_out(x))(jnp.ones((1, 5, 5, 4))))

    _assert_switches("inception_pad_first", padded_first, current=False, reference=True)


def test_densenet_moments_unshared_variant_sums_each_batch_norms_whole_input_again():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import densenet, layers

    if not layers.batch_stats.native.available():
        pytest.skip("native kernels unavailable")
    bn, f32 = dict(eps=1e-5), jnp.float32
    # 8 input channels, 2 layers of growth 4, bottleneck 2 x 4.
    stage = densenet.DenseStage(
        8, 2, 4, 2, transition=False, drop_rate=0.0, bn=bn, dtype=f32, rngs=nnx.Rngs(0)
    )

    def summed_whole_inputs():  # does a moments call sum the second layer's 12-channel input?
        def forward(x):
            return nnx.clone(stage)(x, train=True)

        jaxpr = str(jax.make_jaxpr(forward)(jnp.ones((2, 4, 4, 8))))
        # (The one native call that takes that map is the moments': the 1x1 conv is XLA's.)
        found = re.search(r"custom_partitioning\[\s+call=\{ lambda ; \w+:f32\[2,4,4,12\]", jaxpr)
        return found is not None

    _assert_switches(
        "densenet_moments_unshared", summed_whole_inputs, current=False, reference=True
    )


def test_image_sums_reduce_variant_adds_per_image_gradients_by_a_reduction_again():
    import jax
    import jax.numpy as jnp

    from jaxcls.models import conv

    def as_dot():  # a new function each time: no trace cached from the other setting
        jaxpr = str(jax.make_jaxpr(lambda a: conv.sum_over_images(a))(jnp.ones((4, 3))))
        return "dot_general" in jaxpr and "reduce_sum" not in jaxpr

    _assert_switches("image_sums_reduce", as_dot, current=True, reference=False)


def test_se_grad_xla_variant_takes_the_squeeze_excite_gate_gradient_from_xla_again():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import layers

    if not layers.batch_stats.native.available():
        pytest.skip("native kernels unavailable")
    se = layers.SqueezeExcite(8, 2, rngs=nnx.Rngs(0))

    def native():  # a new function each time: no trace cached from the other setting
        def loss(x):
            return jnp.sum(nnx.clone(se)(x, train=True))

        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(jnp.ones((2, 4, 4, 8))))
        return "jaxcls_image_channel_dots" in jaxpr

    _assert_switches("se_grad_xla", native, current=True, reference=False)
