"""BatchNorm's training branch with native per-channel sums (models/batch_stats.py) against the
jax.numpy form it replaces on CPU: outputs, statistics, running averages and gradients."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls.models import batch_stats, layers

pytestmark = pytest.mark.skipif(
    not batch_stats.native.available(), reason="native kernels unavailable"
)


def _run(bn, x, native: bool):
    """(y, running mean, running var, dx, dscale, dbias) of one training call."""

    def loss(x, bn):
        y = bn(x, use_running_average=False)
        return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), y

    with mock.patch.object(batch_stats, "NATIVE_BATCH_STATS", native):
        bn = nnx.clone(bn)
        (_, y), (dx, dbn) = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, bn)
    dscale = dbn.scale.get_value() if bn.scale is not None else jnp.zeros(())
    return y, bn.mean.get_value(), bn.var.get_value(), dx, dscale, dbn.bias.get_value()


@pytest.mark.parametrize(
    "shape,use_scale",
    [
        ((4, 9, 7, 16), True),
        ((3, 5, 6, 70), True),  # channels not a multiple of a vector
        ((2, 40, 40, 8), False),  # more than one 256-pixel block; no scale (Keras' Inception)
    ],
)
def test_native_batch_norm_equals_the_jax_numpy_form(shape, use_scale):
    x = jax.random.normal(jax.random.key(0), shape) * 3.0 + 1.5
    bn = layers.BatchNorm(shape[-1], use_scale=use_scale, rngs=nnx.Rngs(0))
    bn.bias.set_value(jnp.linspace(-1.0, 1.0, shape[-1]))
    if use_scale:
        bn.scale.set_value(jnp.linspace(0.5, 2.0, shape[-1]))
    jaxpr = str(jax.make_jaxpr(lambda x: nnx.clone(bn)(x, use_running_average=False))(x))
    assert "jaxcls_channel_moments" in jaxpr  # not a silent fallback
    ref = _run(bn, x, native=False)
    got = _run(bn, x, native=True)
    names = ("output", "running mean", "running var", "input gradient", "scale grad", "bias grad")
    for name, a, b in zip(names, ref, got):
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-6), err_msg=name
        )


def test_native_batch_norm_sums_over_a_sharded_batch():
    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs several CPU devices")
    mesh = jax.sharding.Mesh(np.asarray(devices[:2]), ("data",))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 24)) + 0.5
    g = jax.random.normal(jax.random.key(2), x.shape)
    scale, bias = jnp.linspace(0.5, 2.0, 24), jnp.zeros(24)

    def f(x, g):
        (y, mean, var), vjp = jax.vjp(
            lambda x: batch_stats.normalize_train(x, scale, bias, 1e-5), x
        )
        return y, mean, var, vjp((g, jnp.zeros(24), jnp.zeros(24)))[0]

    one = jax.jit(f)(x, g)
    hlo = jax.jit(f).lower(jax.device_put(x, batch), jax.device_put(g, batch)).compile().as_text()
    assert "jaxcls_channel_moments" in hlo and "all-reduce" in hlo
    sharded = jax.jit(f)(jax.device_put(x, batch), jax.device_put(g, batch))
    for a, b in zip(one, sharded):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_batch_norm_keeps_the_jax_numpy_form_where_the_kernels_do_not_apply():
    bn = layers.BatchNorm(8, rngs=nnx.Rngs(0))
    for x in (jnp.ones((4, 8)), jnp.ones((2, 3, 3, 8), jnp.bfloat16)):
        jaxpr = str(jax.make_jaxpr(lambda x: nnx.clone(bn)(x, use_running_average=False))(x))
        assert "jaxcls_channel" not in jaxpr
    # Inference reads the running statistics; no sums at all.
    x = jnp.ones((2, 3, 3, 8))
    jaxpr = str(jax.make_jaxpr(lambda x: nnx.clone(bn)(x, use_running_average=True))(x))
    assert "jaxcls_channel" not in jaxpr


@pytest.mark.parametrize(
    "shape,window,stride,padding",
    [
        ((4, 9, 9, 16), 2, 2, "valid"),  # the scratch CNNs' pool; an odd side rounds down
        ((3, 8, 7, 83), 2, 2, "valid"),  # 4 + 1 vectors of channels and a tail
        ((2, 12, 12, 8), 3, 2, "symmetric"),  # ResNet's stem pool: overlapping, padded windows
        ((2, 11, 10, 5), 3, 2, "symmetric"),  # channels fewer than a vector
        ((2, 5, 5, 35), 3, 1, "same_tf"),
    ],
)
@pytest.mark.parametrize("inputs", ["normal", "ties"])
def test_batch_norm_inside_the_native_pool_equals_normalising_then_pooling(
    shape, window, stride, padding, inputs
):
    """normalize_max_pool_train against normalize_train followed by the native max pool: the
    pooled map, the statistics and the gradients of x, scale and bias, with cotangents on the
    statistics too (their running averages are not all a caller may use), to float rounding."""
    from jaxcls.models import pool

    keys = jax.random.split(jax.random.key(sum(shape) + window), 6)
    x = jax.random.normal(keys[0], shape) * 2.0 + 0.5
    if inputs == "ties":  # equal taps: the first wins on both sides
        x = jnp.round(x)
    c = shape[-1]
    scale = jax.random.normal(keys[1], (c,))  # some negative: the winner is then the minimum of x
    bias = jax.random.normal(keys[2], (c,))
    pads = pool.window_pads(x, window, stride, padding)
    out = jax.eval_shape(lambda x: pool.max_pool(x, window, stride, padding), x)
    cz, cmean, cvar = (jax.random.normal(k, s) for k, s in zip(keys[3:], (out.shape, (c,), (c,))))

    def loss(fused):
        def f(x, scale, bias):
            if fused:
                z, mean, var = batch_stats.normalize_max_pool_train(
                    x, scale, bias, 1e-5, window, stride, pads
                )
            else:
                y, mean, var = batch_stats.normalize_train(x, scale, bias, 1e-5)
                z = pool.max_pool(y, window, stride, padding, impl="native")
            total = jnp.sum(jnp.maximum(z, 0.0) * cz) + jnp.sum(mean * cmean + var * cvar)
            return total, (z, mean, var)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(x, scale, bias)

    jaxpr = str(jax.make_jaxpr(lambda: loss(True))())
    assert "jaxcls_max_pool_affine_fwd" in jaxpr and "jaxcls_max_pool_affine_bwd" in jaxpr
    (_, ref), ref_grads = loss(False)
    (_, got), got_grads = loss(True)
    names = ("pooled", "mean", "var", "x grad", "scale grad", "bias grad")
    for name, a, b in zip(names, (*ref, *ref_grads), (*got, *got_grads), strict=True):
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-6), err_msg=name
        )


@pytest.mark.parametrize("rows,says", [(3, "needs 2 per-channel vectors"), (2, None)])
def test_the_affine_pool_kernel_rejects_per_channel_vectors_of_the_wrong_shape(rows, says):
    """A direct call with too many per-channel vectors fails with the kernel's message instead of
    reading past them; the right shape runs."""
    from jaxcls.models import pool

    x = jnp.ones((2, 4, 4, 8))
    call = jax.jit(lambda x, a: pool._affine_fwd_call(x, a, (2, 2), ((0, 0), (0, 0)))[0])
    a = jnp.ones((rows, 8))
    if says is None:
        np.testing.assert_array_equal(call(x, a), 2.0)  # 1 * 1 + 1 at every tap
    else:
        with pytest.raises(Exception, match=says):
            jax.block_until_ready(call(x, a))
