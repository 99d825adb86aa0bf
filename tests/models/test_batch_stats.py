"""BatchNorm's training branch with native per-channel sums (models/batch_stats.py) against the
jax.numpy form it replaces on CPU: outputs, statistics, running averages and gradients; the same
with the max pool after it (`normalize_max_pool_train`) and with the ReLU or ReLU6 after it
(`normalize_act_train`, `BatchNorm.activated`), alone and inside each model family; the same
followed by the native depthwise convolution, the activation inside its kernels
(`normalize_act_depthwise_train`, `BatchNorm.depthwise_after`); the moments a native depthwise
convolution's forward kernel takes of its output for the BatchNorm after it
(`depthwise.depthwise_conv_moments`); the 1x1 expansion before them building BatchNorm's input
gradient in its kernel (`expand_normalize_act_depthwise_train`, `BatchNorm.expanded_depthwise`);
and a squeeze-excite's gate gradient from the native
per-image sums (`rescale_channels`)."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls.models import batch_stats, depthwise, layers
from tests.models import small

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


def _two_device_batch() -> jax.sharding.NamedSharding:
    """A batch split over two CPU devices (the test is skipped with fewer)."""
    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs several CPU devices")
    mesh = jax.sharding.Mesh(np.asarray(devices[:2]), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


# A 3x3 depthwise kernel for 24 channels, for the sharded-batch test.
_DEPTHWISE_KERNEL = np.linspace(-1.0, 1.0, 9 * 24, dtype=np.float32).reshape(3, 3, 1, 24)


@pytest.mark.parametrize(
    "op,kernel",
    [
        (batch_stats.normalize_train, "jaxcls_channel_moments"),
        (
            lambda x, s, b, eps: batch_stats.normalize_act_train(x, s, b, eps, "relu"),
            "jaxcls_channel_dots_clipped",
        ),
        (
            lambda x, s, b, eps: batch_stats.normalize_act_depthwise_train(
                x, s, b, eps, "relu6", _DEPTHWISE_KERNEL, 1, ((1, 1), (1, 1))
            )[:3],
            "jaxcls_depthwise_affine_bwd",
        ),
    ],
    ids=["normalize_train", "normalize_act_train", "normalize_act_depthwise_train"],
)
def test_native_batch_norm_sums_over_a_sharded_batch(op, kernel):
    """Over a batch sharded on two devices each sums its shard and the sums are all-reduced: the
    output, the statistics and the gradients of x, scale and bias as on one device."""
    batch = _two_device_batch()
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 24)) + 0.5
    g = jax.random.normal(jax.random.key(2), x.shape)
    scale, bias = jnp.linspace(0.5, 2.0, 24), jnp.linspace(-1.0, 1.0, 24)

    def f(x, g):
        (y, mean, var), vjp = jax.vjp(lambda x, s, b: op(x, s, b, 1e-5), x, scale, bias)
        return y, mean, var, *vjp((g, jnp.zeros(24), jnp.zeros(24)))

    one = jax.jit(f)(x, g)
    hlo = jax.jit(f).lower(jax.device_put(x, batch), jax.device_put(g, batch)).compile().as_text()
    assert kernel in hlo and "all-reduce" in hlo
    sharded = jax.jit(f)(jax.device_put(x, batch), jax.device_put(g, batch))
    for i, (a, b) in enumerate(zip(one, sharded, strict=True)):
        # The parameter gradients are sums over the batch (up to ~30 here): float rounding of
        # the order the shards add in, relative to their size.
        atol = 1e-6 if i < 4 else 1e-5 * float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=atol)


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


def _act_run(bn, x, act, ct, native_act: bool):
    """(z, running mean, running var, dx, dscale, dbias) of ``bn.activated(x, act)`` in training,
    and the traced program's text."""

    def loss(x, bn):
        z = bn.activated(x, act, use_running_average=False)
        return jnp.sum(z * ct), z

    with mock.patch.object(batch_stats, "NATIVE_ACT", native_act):
        bn = nnx.clone(bn)
        jaxpr = str(jax.make_jaxpr(lambda x: nnx.grad(loss, has_aux=True)(x, nnx.clone(bn)))(x))
        (_, z), (dx, dbn) = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, bn)
    dscale = dbn.scale.get_value() if bn.scale is not None else jnp.zeros(())
    return (z, bn.mean.get_value(), bn.var.get_value(), dx, dscale, dbn.bias.get_value()), jaxpr


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize(
    "shape,use_scale",
    [
        ((4, 9, 7, 16), True),
        ((3, 5, 6, 83), True),  # 4 + 1 vectors of channels and a tail
        ((2, 40, 40, 5), False),  # several 256-pixel blocks; fewer channels than a vector
    ],
)
def test_batch_norm_with_its_activation_equals_normalising_then_activating(act, shape, use_scale):
    """BatchNorm.activated in training (ReLU's or ReLU6's gradient taken inside BatchNorm's
    backward, `normalize_act_train`) against BatchNorm then the activation: output, running
    averages and the gradients of x, scale and bias, to float rounding; a wide spread of inputs
    so that both of ReLU6's clips and its linear part are hit."""
    keys = jax.random.split(jax.random.key(sum(shape)), 2)
    x = jax.random.normal(keys[0], shape) * 3.0 + 1.5
    ct = jax.random.normal(keys[1], shape)
    bn = layers.BatchNorm(shape[-1], use_scale=use_scale, rngs=nnx.Rngs(0))
    bn.bias.set_value(jnp.linspace(-1.0, 5.0, shape[-1]))
    if use_scale:
        bn.scale.set_value(jnp.linspace(-2.0, 4.0, shape[-1]))  # negative scales too
    ref, ref_jaxpr = _act_run(bn, x, act, ct, native_act=False)
    got, got_jaxpr = _act_run(bn, x, act, ct, native_act=True)
    assert "jaxcls_channel_dots_clipped" in got_jaxpr  # not a silent fallback
    assert "jaxcls_channel_dots_clipped" not in ref_jaxpr
    z = np.asarray(ref[0])
    assert np.mean(z == 0) > 0.1 and np.mean(z > 0) > 0.1
    if act == "relu6":
        assert np.mean(z == 6) > 0.01
    names = ("output", "running mean", "running var", "input gradient", "scale grad", "bias grad")
    for name, a, b in zip(names, ref, got, strict=True):
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-6), err_msg=name
        )


def _depthwise_after_run(bn, conv, x, act, ct, fused: bool):
    """(output, running mean, running var, dx, dscale, dbias, dkernel) of
    ``bn.depthwise_after(x, act, conv)`` in training, and the traced program's text."""

    def loss(x, bn, conv):
        y, _ = bn.depthwise_after(x, act, conv, use_running_average=False)
        # The running averages are not all a caller may use: a cotangent on them too.
        stats = jnp.sum(bn.mean.get_value() * ct[1]) + jnp.sum(bn.var.get_value() * ct[2])
        return jnp.sum(y * ct[0]) + stats, y

    with mock.patch.object(batch_stats, "NATIVE_DEPTHWISE", fused):
        bn, conv = nnx.clone(bn), nnx.clone(conv)
        grad = nnx.grad(loss, argnums=(0, 1, 2), has_aux=True)
        jaxpr = str(jax.make_jaxpr(lambda x: grad(x, nnx.clone(bn), nnx.clone(conv)))(x))
        (_, y), (dx, dbn, dconv) = nnx.jit(
            nnx.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
        )(x, bn, conv)
    running = (bn.mean.get_value(), bn.var.get_value())
    grads = (dx, dbn.scale.get_value(), dbn.bias.get_value(), dconv.kernel.get_value())
    return (y, *running, *grads), jaxpr


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize(
    "shape,kernel,stride,padding",
    [
        ((4, 9, 7, 16), 3, 1, "symmetric"),
        ((3, 8, 8, 83), 3, 2, "same_tf"),  # 4 + 1 vectors of channels and a tail; padded after
        ((2, 11, 10, 5), 5, 2, "symmetric"),  # fewer channels than a vector; odd sides
        ((2, 12, 12, 40), 5, 1, "same_tf"),
        ((3, 1, 1, 8), 3, 1, "symmetric"),  # a 1x1 map: only the centre tap
    ],
)
def test_batch_norm_inside_the_depthwise_kernels_equals_normalising_then_convolving(
    act, shape, kernel, stride, padding
):
    """BatchNorm.depthwise_after in training (BatchNorm's apply and the activation computed inside
    the native depthwise kernels, its backward sums taken by them) against BatchNorm.activated
    then the native depthwise convolution: output, running averages and the gradients of x,
    scale, bias and the depthwise kernel, with cotangents on the running averages too, to float
    rounding; a wide spread of inputs so that both of ReLU6's clips and its linear part are hit."""
    keys = jax.random.split(jax.random.key(sum(shape) + kernel), 5)
    x = jax.random.normal(keys[0], shape) * 3.0 + 1.5
    c = shape[-1]
    bn = layers.BatchNorm(c, rngs=nnx.Rngs(0))
    bn.bias.set_value(jnp.linspace(-1.0, 5.0, c))
    bn.scale.set_value(jnp.linspace(-2.0, 4.0, c))  # negative scales too
    conv = layers.DepthwiseConv2d(
        c, kernel, stride=stride, padding=padding, impl="native", rngs=nnx.Rngs(1)
    )
    out = jax.eval_shape(conv, x)
    ct = tuple(jax.random.normal(k, s) for k, s in zip(keys[1:], (out.shape, (c,), (c,))))
    ref, ref_jaxpr = _depthwise_after_run(bn, conv, x, act, ct, fused=False)
    got, got_jaxpr = _depthwise_after_run(bn, conv, x, act, ct, fused=True)
    for target in ("jaxcls_depthwise_affine_fwd", "jaxcls_depthwise_affine_bwd"):
        assert target in got_jaxpr and target not in ref_jaxpr  # not a silent fallback
    assert "jaxcls_channel_dots_clipped" not in got_jaxpr  # the kernel's own sums replace it
    z = np.asarray(jax.nn.relu6(x * bn.scale.get_value() + bn.bias.get_value()))
    if shape[1] > 1:
        assert np.mean(z == 0) > 0.1 and np.mean((z > 0) & (z < 6)) > 0.1
    names = ("output", "running mean", "running var", "x grad", "scale grad", "bias grad",
             "kernel grad")  # fmt: skip
    for name, a, b in zip(names, ref, got, strict=True):
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-6), err_msg=name
        )


def _expanded_run(bn, expand, conv, x, act, ct, fused: bool):
    """(output, running mean, running var, dx, dexpand, dscale, dbias, dkernel) of
    ``bn.expanded_depthwise(x, expand, act, conv)`` in training, and the traced program's text."""

    def loss(x, bn, expand, conv):
        y, _ = bn.expanded_depthwise(x, expand, act, conv, use_running_average=False)
        stats = jnp.sum(bn.mean.get_value() * ct[1]) + jnp.sum(bn.var.get_value() * ct[2])
        return jnp.sum(y * ct[0]) + stats, y

    with mock.patch.object(batch_stats, "NATIVE_EXPAND", fused):
        bn, expand, conv = nnx.clone(bn), nnx.clone(expand), nnx.clone(conv)
        grad = nnx.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
        jaxpr = str(
            jax.make_jaxpr(lambda x: grad(x, nnx.clone(bn), nnx.clone(expand), nnx.clone(conv)))(x)
        )
        (_, y), (dx, dbn, dexpand, dconv) = nnx.jit(
            nnx.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True)
        )(x, bn, expand, conv)
    running = (bn.mean.get_value(), bn.var.get_value())
    grads = (dx, dexpand.kernel.get_value(), dbn.scale.get_value(), dbn.bias.get_value())
    return (y, *running, *grads, dconv.kernel.get_value()), jaxpr


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize(
    "shape,out,stride",
    [
        ((4, 9, 8, 16), 96, 1),  # 72 pixels an image: two 32-pixel chunks and a short one
        ((2, 12, 11, 3), 83, 2),  # few input channels; output channels with a vector tail
        ((3, 8, 8, 37), 5, 1),  # fewer output channels than a vector; input ones with a tail
        ((2, 16, 16, 48), 144, 2),  # the most input channels the kernel takes
    ],
)
def test_an_expansion_builds_batch_norms_input_gradient_inside_its_kernel(act, shape, out, stride):
    """BatchNorm.expanded_depthwise in training (the 1x1 expansion's native both-gradients kernel
    building BatchNorm's input gradient, with the activation's, as it reads it) against the
    expansion's output written and BatchNorm.depthwise_after: output, running averages and the
    gradients of x, the expansion's kernel, scale, bias and the depthwise kernel, with
    cotangents on the running averages too, to float rounding; inputs spread so that both of
    ReLU6's clips and its linear part are hit."""
    keys = jax.random.split(jax.random.key(sum(shape) + out), 5)
    x = jax.random.normal(keys[0], shape) * 2.0 + 0.5
    expand = layers.Conv2d(shape[-1], out, 1, rngs=nnx.Rngs(2))
    bn = layers.BatchNorm(out, rngs=nnx.Rngs(0))
    bn.bias.set_value(jnp.linspace(-1.0, 5.0, out))
    bn.scale.set_value(jnp.linspace(-2.0, 4.0, out))  # negative scales too
    conv = layers.DepthwiseConv2d(out, 3, stride=stride, impl="native", rngs=nnx.Rngs(1))
    y_shape = (*shape[:-1], out)
    z_shape = jax.eval_shape(conv, jax.ShapeDtypeStruct(y_shape, jnp.float32)).shape
    ct = tuple(jax.random.normal(k, s) for k, s in zip(keys[1:], (z_shape, (out,), (out,))))
    ref, ref_jaxpr = _expanded_run(bn, expand, conv, x, act, ct, fused=False)
    got, got_jaxpr = _expanded_run(bn, expand, conv, x, act, ct, fused=True)
    assert "jaxcls_pointwise_bn_bwd" in got_jaxpr and "jaxcls_pointwise_bn_bwd" not in ref_jaxpr
    assert "jaxcls_pointwise_bwd" in ref_jaxpr  # the same kernel, reading the gradient
    assert "jaxcls_depthwise_affine_bwd" in got_jaxpr
    y = np.asarray(expand(x))
    z = np.asarray(jax.nn.relu6((y - y.mean((0, 1, 2))) / y.std((0, 1, 2)) * bn.scale.get_value()
                                + bn.bias.get_value()))  # fmt: skip
    assert np.mean(z == 0) > 0.1 and np.mean((z > 0) & (z < 6)) > 0.1
    if act == "relu6":
        assert np.mean(z == 6) > 0.02
    names = ("output", "running mean", "running var", "x grad", "expansion kernel grad",
             "scale grad", "bias grad", "depthwise kernel grad")  # fmt: skip
    for name, a, b in zip(names, ref, got, strict=True):
        if name in ("output", "running mean", "running var"):  # the same forward program
            np.testing.assert_array_equal(b, a, err_msg=name)
            continue
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-6), err_msg=name
        )


def test_an_expansion_keeps_the_separate_gradient_where_the_kernel_does_not_apply():
    """expanded_depthwise builds BatchNorm's gradient in the 1x1 kernel only in training, for
    ReLU and ReLU6, and for an expansion whose both gradients come from that kernel: not with
    more than 48 input channels, a bias, a 3x3 expansion or SiLU."""
    x = jnp.ones((2, 8, 8, 16))
    bn = layers.BatchNorm(24, rngs=nnx.Rngs(0))
    conv = layers.DepthwiseConv2d(24, 3, impl="native", rngs=nnx.Rngs(1))

    def jaxpr(expand, act="relu6", train=True, inputs=x):
        def f(x):
            y, _ = nnx.clone(bn).expanded_depthwise(
                x, nnx.clone(expand), act, conv, use_running_average=not train
            )
            return jnp.sum(y)

        return str(jax.make_jaxpr(jax.grad(f))(inputs))

    def expansion(c=16, k=1, **kw):
        return layers.Conv2d(c, 24, k, rngs=nnx.Rngs(2), **kw)

    assert "jaxcls_pointwise_bn_bwd" in jaxpr(expansion())
    assert "jaxcls_pointwise_bn_bwd" in jaxpr(expansion(), act="relu")
    assert "jaxcls_pointwise_bn_bwd" not in jaxpr(expansion(), act="silu")
    assert "jaxcls_pointwise_bn_bwd" not in jaxpr(expansion(use_bias=True))
    assert "jaxcls_pointwise_bn_bwd" not in jaxpr(expansion(k=3))
    wide = jnp.ones((2, 8, 8, 64))
    assert "jaxcls_pointwise_bn_bwd" not in jaxpr(expansion(64), inputs=wide)
    assert "jaxcls_pointwise_bn_bwd" not in jaxpr(expansion(), train=False)


@pytest.mark.parametrize(
    "shape,kernel,stride,padding",
    [
        ((4, 9, 7, 16), 3, 1, "symmetric"),
        ((3, 8, 8, 83), 3, 2, "same_tf"),  # 4 + 1 vectors of channels and a tail
        ((2, 11, 10, 5), 5, 2, "symmetric"),  # fewer channels than a vector; odd sides
        ((3, 1, 1, 8), 3, 1, "symmetric"),  # a 1x1 map
    ],
)
def test_depthwise_kernels_give_the_moments_of_their_output(shape, kernel, stride, padding):
    """`depthwise_conv_moments`: the output of `depthwise_conv` (the same kernel, to the bit), its
    per-channel [sum y, sum y * y] equal to `channel_moments` of it within float rounding, no
    gradient through the moments (a loss on them leaves the gradients of x and the kernel those
    of the output alone); and the affine kernels' (`BatchNorm.depthwise_after(...,
    moments=True)`) the same for their output."""
    keys = jax.random.split(jax.random.key(sum(shape) + kernel), 4)
    x = jax.random.normal(keys[0], shape) * 2.0 + 1.0
    c = shape[-1]
    k = jax.random.normal(keys[1], (kernel, kernel, 1, c))

    def plain(x, k):
        return depthwise.depthwise_conv(x, k, stride, padding, "native")

    def with_moments(x, k):
        return depthwise.depthwise_conv_moments(x, k, stride, padding, "native")

    y_ref = jax.jit(plain)(x, k)
    y, moments = jax.jit(with_moments)(x, k)
    np.testing.assert_array_equal(y, y_ref)
    want = np.stack(batch_stats.channel_moments(y_ref))
    np.testing.assert_allclose(moments, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))

    ct = jax.random.normal(keys[2], y.shape)
    weights = jax.random.normal(keys[3], (2, c))

    def loss(x, k, op):
        out = op(x, k)
        y, moments = out if isinstance(out, tuple) else (out, None)
        extra = 0.0 if moments is None else jnp.sum(moments * weights)
        return jnp.sum(y * ct) + extra

    got = jax.jit(jax.grad(lambda x, k: loss(x, k, with_moments), (0, 1)))(x, k)
    ref = jax.jit(jax.grad(lambda x, k: loss(x, k, plain), (0, 1)))(x, k)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(b, a)

    bn = layers.BatchNorm(c, rngs=nnx.Rngs(0))
    bn.scale.set_value(jnp.linspace(0.5, 2.0, c))
    conv = layers.DepthwiseConv2d(
        c, kernel, stride=stride, padding=padding, impl="native", rngs=nnx.Rngs(1)
    )

    def affine(x):
        return nnx.clone(bn).depthwise_after(
            x, "relu6", conv, use_running_average=False, moments=True
        )

    assert "jaxcls_depthwise_affine_fwd" in str(jax.make_jaxpr(affine)(x))
    y, moments = jax.jit(affine)(x)
    want = np.stack(batch_stats.channel_moments(y))
    np.testing.assert_allclose(moments, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))


def test_depthwise_moments_over_a_sharded_batch_sum_every_devices_images():
    """Over a batch sharded on two devices each device's kernel sums its images and the moments
    are all-reduced: those of one device, the output sharded as the input."""
    batch = _two_device_batch()
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 24)) + 0.5

    def f(x):
        return depthwise.depthwise_conv_moments(x, _DEPTHWISE_KERNEL, 2, "same_tf", "native")

    y, moments = jax.jit(f)(x)
    sharded = jax.device_put(x, batch)
    hlo = jax.jit(f).lower(sharded).compile().as_text()
    assert "jaxcls_depthwise_fwd_moments" in hlo and "all-reduce" in hlo and "all-gather" not in hlo
    y2, moments2 = jax.jit(f)(sharded)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_allclose(moments2, moments, rtol=1e-6, atol=1e-6)
    assert y2.sharding.spec == batch.spec


def test_batch_norm_stays_outside_the_depthwise_kernels_where_they_do_not_apply():
    """depthwise_after keeps BatchNorm.activated then the convolution in inference (running
    statistics), for SiLU, and for a depthwise convolution that does not run native."""
    bn = layers.BatchNorm(8, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 5, 5, 8))

    def jaxpr(act, conv, train=True):
        def f(x):
            return nnx.clone(bn).depthwise_after(x, act, conv, use_running_average=not train)[0]

        return str(jax.make_jaxpr(f)(x))

    native = layers.DepthwiseConv2d(8, 3, impl="native", rngs=nnx.Rngs(1))
    assert "jaxcls_depthwise_affine_fwd" in jaxpr("relu6", native)
    assert "jaxcls_depthwise_affine_fwd" not in jaxpr("relu6", native, train=False)
    assert "jaxcls_depthwise_affine_fwd" not in jaxpr("silu", native)
    shifted = layers.DepthwiseConv2d(8, 3, impl="shifted", rngs=nnx.Rngs(1))
    assert "jaxcls_depthwise" not in jaxpr("relu6", shifted)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_clipped_sums_mask_exactly_where_the_forward_activation_passes(act):
    """The native sums decide ``0 < x * mul + shift < hi`` per element as XLA computed the
    activation's input in the forward pass (one rounding where the machine has FMA): inputs a few
    ulps either side of both ends of the range, where a product rounded on its own would flip
    some of them. An element counted on the wrong side would move a sum by about 1; float
    rounding of the sums moves them by ~1e-5."""
    rng = np.random.default_rng(3)
    shape, c = (8, 16, 16, 48), 48
    mul = rng.uniform(0.3, 3.0, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32)
    shift = rng.normal(size=c).astype(np.float32)
    hi = batch_stats.CLIPPED_ACTS[act]
    ends = [0.0] + ([6.0] if act == "relu6" else [])
    x = rng.normal(size=shape).astype(np.float32)
    for end in ends:  # a third of the entries per end: the end's root, moved by 0-3 ulps
        near = np.broadcast_to((end - shift) / mul, shape).astype(np.float32)
        steps = rng.integers(-3, 4, size=shape)
        for k in range(3):
            near = np.where(steps > k, np.nextafter(near, np.float32(np.inf)), near)
            near = np.where(steps < -k, np.nextafter(near, np.float32(-np.inf)), near)
        x = np.where(rng.random(shape) < 0.33, near, x)
    g = rng.normal(size=shape).astype(np.float32)
    z = np.asarray(jax.jit(lambda x: getattr(jax.nn, act)(x * mul + shift))(x))
    keep = (z > 0) & (z < hi)
    total, dot = jax.jit(batch_stats._clipped_dots(hi))(
        jnp.asarray(g), jnp.asarray(x), jnp.asarray(mul), jnp.asarray(shift)
    )
    gk = np.where(keep, g, 0.0).astype(np.float64)
    np.testing.assert_allclose(total, gk.sum((0, 1, 2)), atol=1e-3)
    np.testing.assert_allclose(dot, (gk * x).sum((0, 1, 2)), atol=1e-3)
    # The backward pass's own mask (XLA, from x) agrees with the forward's too.
    y = np.asarray(jax.jit(lambda x: x * mul + shift)(x))
    np.testing.assert_array_equal((y > 0) & (y < hi), keep)


@pytest.mark.parametrize("act", ["relu6", None])
def test_batch_norm_gives_the_same_bits_on_every_call(act):
    """Training is repeatable: BatchNorm's sums (forward and backward, with and without the
    activation's mask) are taken in blocks that the pool's threads claim in a different order on
    each call, and every block must round alike whichever thread runs it. 147 channels: 4-vector
    chunks, 1-vector chunks and a scalar tail, each a loop of its own; 32 blocks of rows over two
    tasks. Before the kernels were built with ``-ffp-contract=off`` the compiler fused one thread's
    copy of the 1-vector loop into FMAs and not the other's, and about a third of these calls
    differed in the last bit of some channel's scale gradient."""
    shape = (32, 16, 16, 147)
    x = jax.random.normal(jax.random.key(0), shape) * 2
    gz = jax.random.normal(jax.random.key(1), shape)
    scale, bias = jnp.full(147, 3.0), jnp.ones(147)

    def fwd_bwd(x, scale, bias, gz):
        if act is None:
            f = lambda x, s, b: batch_stats.normalize_train(x, s, b, 1e-5)  # noqa: E731
        else:
            f = lambda x, s, b: batch_stats.normalize_act_train(x, s, b, 1e-5, act)  # noqa: E731
        (z, mean, var), vjp = jax.vjp(f, x, scale, bias)
        return (z, mean, var, *vjp((gz, jnp.zeros_like(mean), jnp.zeros_like(var))))

    run = jax.jit(fwd_bwd)
    first = jax.device_get(run(x, scale, bias, gz))
    names = ("output", "mean", "var", "input gradient", "scale grad", "bias grad")
    for call in range(40):
        for name, a, b in zip(names, first, jax.device_get(run(x, scale, bias, gz)), strict=True):
            np.testing.assert_array_equal(b, a, err_msg=f"{name}, call {call + 2}")


@pytest.mark.parametrize("channels,says", [(7, "one value per channel"), (8, None)])
def test_the_clipped_sums_kernel_rejects_per_channel_vectors_of_the_wrong_size(channels, says):
    """A direct call with too short a ``mul`` fails with the kernel's message instead of reading
    past it; the right size runs."""
    g, x = jnp.ones((2, 4, 4, 8)), jnp.ones((2, 4, 4, 8))
    call = jax.jit(batch_stats._clipped_dots(6.0))
    mul, shift = jnp.ones((channels,)), jnp.ones((8,))
    if says is None:  # x * 1 + 1 = 2: inside (0, 6), every element counted
        total, dot = call(g, x, mul, shift)
        np.testing.assert_array_equal(total, 32.0)
        np.testing.assert_array_equal(dot, 32.0)
    else:
        with pytest.raises(Exception, match=says):
            jax.block_until_ready(call(g, x, mul, shift))


def _model_train_call(model, x, ct, flag: str, native: bool, kernel: str):
    """(logits, gradients of the parameters and of x, running statistics after the step) of one
    jitted training call with ``batch_stats.<flag>`` set to ``native``, whose program has the
    native ``kernel`` exactly when ``native`` (no silent fallback)."""

    def loss(model, x):
        logits, _ = model(x, train=True)
        return jnp.sum(logits * ct), logits

    model = nnx.clone(model)
    with mock.patch.object(batch_stats, flag, native):
        grad = nnx.grad(loss, argnums=1, has_aux=True)
        jaxpr = str(jax.make_jaxpr(lambda x: grad(nnx.clone(model), x))(x))
        # Jitted: one compilation, not one per operation (eagerly a full-depth model took up to
        # 77 s in the suite on an AMD EPYC).
        (_, logits), grads = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
            model, x
        )
    assert (kernel in jaxpr) == native
    return logits, grads, nnx.state(model, nnx.BatchStat)


def _models_train_alike(name, size, flag, kernel, **overrides):
    """`_model_train_call` of a small ``name`` (tests/models/small.py; full size under
    JAXCLS_SLOW_TESTS) without and with the native form: the logits, every gradient and the
    running averages within 1e-5 of the largest value."""
    from jaxcls.models import registry

    overrides = {**small.overrides(name), **overrides}
    model = registry.create(name, num_classes=7, rngs=nnx.Rngs(0), **overrides)
    x = jax.random.normal(jax.random.key(4), (2, size, size, 3))
    ct = jax.random.normal(jax.random.key(5), (2, 7))
    ref = _model_train_call(model, x, ct, flag, False, kernel)
    got = _model_train_call(model, x, ct, flag, True, kernel)
    for what, a, b in zip(("logits", "gradients", "running statistics"), ref, got, strict=True):
        scale = max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(a))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5 * max(scale, 1e-6), err_msg=what)


@pytest.mark.parametrize(
    "name,overrides,size",
    [
        ("resnet50", {}, 32),  # Bottleneck: two BatchNorm + ReLU units a block, ReLU after the sum
        ("resnet18", {}, 32),  # BasicBlock
        ("resnetv2_50", {}, 32),  # pre-activation: BatchNorm + ReLU before each convolution
        ("mobilenetv2_100", {}, 32),  # BatchNorm + ReLU6 around the depthwise convolutions
        # 64 px: at 32 its last block and norm5 see a 1x1 map, BatchNorm over 2 values a channel,
        # whose input gradient is zero but for eps; every gradient below it is then what is left
        # of a cancellation, and on an AMD EPYC (AVX2) the two forms differed by 0.15% (from
        # 30ae772 on); 2x2 maps here.
        ("densenet121", dict(growth_rate=8, block_config=(2, 2, 2, 2)), 64),
        ("vgg11_bn", {}, 32),
        ("cnn", dict(filters=(8, 16), convs_per_block=2), 32),  # a unit that no max pool follows
    ],
)
def test_models_train_alike_with_batch_norm_taking_the_activation_gradient(name, overrides, size):
    """Each model family that puts a ReLU or ReLU6 after BatchNorm: one training call with the
    activation's gradient inside BatchNorm's backward gives the logits, every gradient and the
    running averages of the separate form, to float rounding."""
    _models_train_alike(name, size, "NATIVE_ACT", "jaxcls_channel_dots_clipped", **overrides)


@pytest.mark.parametrize("name", ["mobilenetv2_100", "tf_efficientnet_lite0"])
def test_models_train_alike_with_batch_norm_inside_the_depthwise_kernels(name):
    """The inverted residuals with ReLU6 (MobileNetV2; EfficientNet-Lite with TF's asymmetric
    'same' padding): one training call with BatchNorm's apply and backward sums inside the
    depthwise kernels gives the logits, every gradient and the running averages of the separate
    form, to float rounding."""
    _models_train_alike(name, 32, "NATIVE_DEPTHWISE", "jaxcls_depthwise_affine_bwd")


@pytest.mark.parametrize("name", ["mobilenetv2_100", "tf_efficientnet_lite0"])
def test_models_train_alike_with_the_expansion_building_batch_norms_gradient(name):
    """The inverted residuals with ReLU6 whose expansion has at most 48 input channels: one
    training call with that 1x1 kernel building BatchNorm's input gradient gives the logits,
    every gradient and the running averages of the written gradient, to float rounding."""
    _models_train_alike(name, 32, "NATIVE_EXPAND", "jaxcls_pointwise_bn_bwd")


@pytest.mark.parametrize("name", ["mobilenetv2_100", "efficientnet_b0"])
def test_models_train_alike_with_batch_norm_taking_the_depthwise_kernels_moments(name):
    """MobileNetV2 (ReLU6: the affine kernels' moments, and the plain kernel's in its first
    block) and EfficientNet-B0 (SiLU: the plain kernel's): one training call with each BatchNorm
    after a depthwise convolution taking the moments its forward kernel summed gives the logits,
    every gradient and the running averages of the separate sums, to float rounding; and the
    program sums one map fewer per depthwise layer (`jaxcls_channel_moments` calls). 128 px:
    at 32 the last blocks' BatchNorm sees 1x1 maps (2 values a channel), whose variance is a
    cancellation that any other order of the same sums moves by up to 100% (the gradients differed
    by 1.25x of their largest value; at 64 px by 2.3e-5, at 96-160 by 3.6e-6 to 7e-6, AMD EPYC)."""
    from jaxcls.models import registry

    _models_train_alike(name, 128, "NATIVE_DW_MOMENTS", "jaxcls_depthwise_fwd_moments")
    model = registry.create(name, num_classes=7, rngs=nnx.Rngs(0), **small.overrides(name))
    x = jnp.ones((2, 32, 32, 3))
    depthwise_layers = sum(isinstance(m, layers.DepthwiseConv2d) for _, m in nnx.iter_graph(model))
    calls = []
    for flag in (False, True):
        with mock.patch.object(batch_stats, "NATIVE_DW_MOMENTS", flag):
            jaxpr = str(jax.make_jaxpr(lambda x: nnx.clone(model)(x, train=True))(x))
        calls.append(jaxpr.count("jaxcls_channel_moments"))
    assert depthwise_layers >= 2 and calls[0] - calls[1] == depthwise_layers, calls


@pytest.mark.parametrize("shape", [(2, 16, 16, 32), (3, 9, 7, 37), (4, 23, 23, 5), (2, 1, 1, 8)])
def test_rescaled_channels_take_the_gates_gradient_from_per_image_sums(shape):
    """`rescale_channels(x, gates)` is ``x * gates`` with the gates' gradient (per image and
    channel, over the map) from the native kernel: 16-channel vectors and a tail, maps over
    several 256-pixel blocks, a 1x1 map; output and both gradients within 1e-5."""
    x = jax.random.normal(jax.random.key(0), shape)
    gates = jax.nn.sigmoid(jax.random.normal(jax.random.key(1), (shape[0], 1, 1, shape[-1])))
    ct = jax.random.normal(jax.random.key(2), shape)

    def grads(op):
        return jax.value_and_grad(lambda x, s: jnp.sum(op(x, s) * ct), (0, 1))(x, gates)

    fused = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(batch_stats.rescale_channels(x, gates))))(x)
    assert "jaxcls_image_channel_dots" in str(fused)
    (v, (dx, ds)), (v_ref, (dx_ref, ds_ref)) = (
        grads(batch_stats.rescale_channels),
        grads(lambda x, s: x * s),
    )
    np.testing.assert_allclose(v, v_ref, rtol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ds, ds_ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ds_ref))))


def test_rescaled_channels_over_a_sharded_batch_sum_each_devices_images():
    """Over a batch sharded on two devices each device sums its own images (no gather, no
    all-reduce of the per-image sums), with the gradients of one device."""
    batch = _two_device_batch()
    x = jax.random.normal(jax.random.key(0), (8, 6, 6, 20))
    gates = jax.nn.sigmoid(jax.random.normal(jax.random.key(1), (8, 1, 1, 20)))
    ct = jax.random.normal(jax.random.key(2), x.shape)
    grad = jax.grad(lambda x, s: jnp.sum(batch_stats.rescale_channels(x, s) * ct), (0, 1))
    one = jax.jit(grad)(x, gates)
    args = jax.device_put(x, batch), jax.device_put(gates, batch)
    hlo = jax.jit(grad).lower(*args).compile().as_text()
    (call,) = [ln for ln in hlo.splitlines() if "jaxcls_image_channel_dots" in ln]
    assert "f32[4,20]" in call  # this device's 4 images
    assert "all-gather" not in hlo and "all-reduce" not in hlo
    for a, b in zip(one, jax.jit(grad)(*args), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_the_per_image_sums_kernel_rejects_results_of_the_wrong_shape():
    """A direct call whose results are not [images, channels] fails with the kernel's message
    instead of writing past them."""
    g = jnp.ones((2, 4, 4, 8))
    wrong = (jax.ShapeDtypeStruct((2, 7), jnp.float32),) * 2
    call = jax.ffi.ffi_call("jaxcls_image_channel_dots", wrong, vmap_method="sequential")
    with pytest.raises(Exception, match=r"must be \[images, channels\]"):
        jax.block_until_ready(jax.jit(call)(g, g))
    total, dot = jax.jit(batch_stats._image_dots)(g, 2 * g)
    np.testing.assert_array_equal(total, 16.0)
    np.testing.assert_array_equal(dot, 32.0)


def test_a_squeeze_excite_takes_the_native_gate_gradient_in_training_only():
    """EfficientNet's blocks in training: the gate gradient from the kernel, and one training call
    of a small EfficientNet-B0 gives the logits, every gradient and the running averages of
    XLA's reduction within 1e-5 of the largest value; evaluation keeps ``x * gates``."""
    se = layers.SqueezeExcite(8, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4, 4, 8))
    for train, native in ((True, True), (False, False)):
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, t=train: jnp.sum(se(x, train=t))))(x))
        assert ("jaxcls_image_channel_dots" in jaxpr) == native

    _models_train_alike("efficientnet_b0", 32, "NATIVE_RESCALE", "jaxcls_image_channel_dots")
