"""Max pooling's 'taps' gradient (models/pool.py) equals XLA's select-and-scatter, ties included;
the native kernels equal 'taps' bit for bit (sharded: tests/models/test_native.py); a ReLU unit
pooled after its activation equals pooling it before; BatchNorm applied inside the native pool
equals it applied before (to float rounding)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls.models import batch_stats, cnn, inception, layers, pool, vgg


def _value_and_grads(x, ct, window, stride, padding):
    @jax.jit  # one compilation per case: both implementations
    def both(x):
        def run(impl):
            def loss(x):
                y = pool.max_pool(x, window, stride, padding, impl=impl)
                return jnp.sum(y * ct), y

            (_, y), g = jax.value_and_grad(loss, has_aux=True)(x)
            return y, g

        return run("xla"), run("taps")

    return both(x)


@pytest.mark.parametrize(
    "window,stride,padding,size",
    [
        (3, 2, "symmetric", 12),  # ResNet's stem pool: overlapping windows
        (3, 2, "symmetric", 9),
        (2, 2, "valid", 8),  # VGG / the scratch CNN: disjoint windows
        (3, 2, "valid", 11),  # Inception
        (3, 1, "same_tf", 5),
        (3, 2, "same_tf", 1),  # a 1x1 map
    ],
)
@pytest.mark.parametrize("inputs", ["normal", "relu", "ties"])
def test_taps_match_xla_outputs_and_gradients(window, stride, padding, size, inputs):
    kx, kc = jax.random.split(jax.random.key(size))
    x = jax.random.normal(kx, (2, size, size + 1, 3))
    if inputs == "relu":  # most windows hold several zeros
        x = jnp.maximum(x - 0.5, 0.0)
    elif inputs == "ties":  # few distinct values: equal maxima everywhere
        x = jnp.round(x)
    out = jax.eval_shape(lambda x: pool.max_pool(x, window, stride, padding, impl="xla"), x)
    ct = jax.random.normal(kc, out.shape)
    (y_xla, g_xla), (y_taps, g_taps) = _value_and_grads(x, ct, window, stride, padding)
    np.testing.assert_array_equal(y_taps, y_xla)
    if stride >= window:
        # Disjoint windows: every input gets at most one gradient, so the sums are the same sums.
        np.testing.assert_array_equal(g_taps, g_xla)
    # Overlapping windows add in another order; a tie routed to another input would be off by
    # a whole cotangent (about 1), not by rounding.
    np.testing.assert_allclose(g_taps, g_xla, rtol=1e-6, atol=1e-6)


def test_a_tie_sends_the_gradient_to_the_first_maximum_only():
    x = jnp.zeros((1, 2, 2, 1))  # one 2x2 window of equal values
    g = jax.grad(lambda x: jnp.sum(pool.max_pool(x, 2, 2, "valid", impl="taps")))(x)
    np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def test_the_taps_gradient_runs_without_a_scatter_on_cpu():
    x = jnp.ones((2, 16, 16, 8))

    def grad_hlo(impl):
        fn = jax.grad(lambda x: jnp.sum(pool.max_pool(x, 3, 2, "symmetric", impl=impl)))
        return jax.jit(fn).lower(x).compile().as_text()

    scatter = re.compile(r" (select-and-)?scatter\(")  # an HLO instruction, not a name
    assert not scatter.search(grad_hlo("taps"))
    if jax.default_backend() == "cpu":
        assert scatter.search(grad_hlo("xla"))  # what the custom gradient replaces


def test_auto_picks_taps_on_cpu_and_the_override_restores():
    x = jnp.ones((1, 4, 4, 1))

    def custom_vjp_used():
        jaxpr = jax.make_jaxpr(lambda x: pool.max_pool(x, 2, 2, "valid"))(x)
        return any("custom_vjp" in e.primitive.name for e in jaxpr.eqns)

    assert custom_vjp_used() == (jax.default_backend() == "cpu")
    with layers.set_max_pool_impl("xla"):
        assert not custom_vjp_used()
    assert custom_vjp_used() == (jax.default_backend() == "cpu")
    with pytest.raises(ValueError, match="max pool impl"):
        pool.max_pool(x, 2, 2, "valid", impl="fast")


# --------------------------------------------------------------------------------------- native
native_only = pytest.mark.skipif(not pool.native.available(), reason="native kernels unavailable")


def _pool_and_grad(x, ct, window, stride, padding, impl):
    def loss(x):
        y = pool.max_pool(x, window, stride, padding, impl=impl)
        return jnp.sum(jnp.where(jnp.isnan(y), 0.0, y) * ct), y

    (_, y), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
    return np.asarray(y), np.asarray(g)


@native_only
@pytest.mark.parametrize(
    "window,stride,padding,size",
    [
        (3, 2, "symmetric", 12),
        (3, 2, "symmetric", 9),
        (2, 2, "valid", 8),
        (3, 2, "valid", 11),
        (3, 1, "same_tf", 5),
        (3, 2, "same_tf", 1),
    ],
)
@pytest.mark.parametrize("channels", [3, 83])  # a tail only; 4 + 1 vectors and a tail
@pytest.mark.parametrize("inputs", ["normal", "relu", "ties", "-inf"])
def test_native_equals_taps_bit_for_bit(window, stride, padding, size, channels, inputs):
    kx, kc = jax.random.split(jax.random.key(size + channels))
    x = jax.random.normal(kx, (2, size, size + 1, channels))
    if inputs == "relu":
        x = jnp.maximum(x - 0.5, 0.0)
    elif inputs == "ties":
        x = jnp.round(x)
    elif inputs == "-inf":  # whole windows of -inf: the first tap (maybe in the padding) wins
        x = x.at[:, :, :, : channels // 2 + 1].set(-jnp.inf)
    out = jax.eval_shape(lambda x: pool.max_pool(x, window, stride, padding, impl="xla"), x)
    ct = jax.random.normal(kc, out.shape)
    jaxpr = str(jax.make_jaxpr(lambda x: pool.max_pool(x, window, stride, padding, "native"))(x))
    assert "jaxcls_max_pool_fwd" in jaxpr  # not a silent fallback
    y_taps, g_taps = _pool_and_grad(x, ct, window, stride, padding, "taps")
    y_native, g_native = _pool_and_grad(x, ct, window, stride, padding, "native")
    np.testing.assert_array_equal(y_native, y_taps)
    np.testing.assert_array_equal(g_native, g_taps)


@native_only
def test_native_a_window_with_a_nan_gives_nan_and_no_gradient():
    """XLA:CPU's reduce-window keeps or drops a NaN depending on where it sits in the window; the
    native kernel always propagates it (as PyTorch does) and sends that window's gradient nowhere."""
    x = jnp.arange(2 * 4 * 4 * 20, dtype=jnp.float32).reshape(2, 4, 4, 20)
    x = x.at[0, 0, 0, :].set(jnp.nan)  # the first tap of the first window
    y, g = _pool_and_grad(x, jnp.ones((2, 2, 2, 20)), 2, 2, "valid", "native")
    assert np.isnan(y[0, 0, 0]).all() and not np.isnan(y[0, 1:]).any() and not np.isnan(y[1]).any()
    np.testing.assert_array_equal(g[0, :2, :2], 0.0)  # the NaN window: no gradient
    assert g.sum() == 2 * 4 * 20 - 20  # every other window sends its 1 to its maximum


def test_auto_picks_native_on_cpu_where_the_kernels_take_the_input():
    def ffi_used(x):
        return "jaxcls_max_pool" in str(jax.make_jaxpr(lambda x: pool.max_pool(x, 3, 2))(x))

    on_cpu = jax.default_backend() == "cpu" and pool.native.available()
    assert ffi_used(jnp.ones((1, 8, 8, 4))) == on_cpu
    assert not ffi_used(jnp.ones((1, 8, 8, 4), jnp.bfloat16))  # float32 only: 'taps' instead
    with layers.set_max_pool_impl("taps"):
        assert not ffi_used(jnp.ones((1, 8, 8, 4)))


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_a_relu_unit_pooled_after_its_activation_equals_pooling_it_before(act):
    """ConvNormAct.max_pooled (ResNet's and DenseNet's stem) applies ReLU to the pooled map: the
    same outputs and the same gradients, bit for bit, ties among zeros included."""
    from unittest import mock

    unit = layers.ConvNormAct(3, 8, 3, stride=2, act=act, rngs=nnx.Rngs(0))
    unit.bn.bias.set_value(jnp.full((8,), -1.0))  # mostly negative: many all-zero ReLU windows
    x = jax.random.normal(jax.random.key(5), (2, 16, 16, 3))
    ct = jax.random.normal(jax.random.key(6), (2, 4, 4, 8))

    def run(after):
        def loss(unit, x):
            y = unit.max_pooled(x, 3, 2, "symmetric", train=True)
            return jnp.sum(y * ct), y

        # BatchNorm's apply outside the pool (inside it: the tests below, to float rounding).
        with (
            mock.patch.object(layers, "ACT_AFTER_POOL", after),
            mock.patch.object(batch_stats, "NATIVE_POOLED", False),
        ):
            (_, y), grads = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
                nnx.clone(unit), x
            )
        return y, grads

    (y_after, g_after), (y_before, g_before) = run(True), run(False)
    if act == "relu":
        assert float(jnp.mean(y_before == 0)) > 0.1  # windows of ReLU zeros: ties
    np.testing.assert_array_equal(y_after, y_before)
    for a, b in zip(jax.tree.leaves(g_after), jax.tree.leaves(g_before)):
        np.testing.assert_array_equal(a, b)


_CNN_SPECS = {
    "batch_norm": dict(filters=(4, 8), convs_per_block=2),
    "no_batch_norm": dict(filters=(4, 8), batch_norm=False),
    "bn_after_act": dict(filters=(4, 8), bn_after_act=True),  # BatchNorm last: not moved
    "silu": dict(filters=(4, 8), act="silu"),  # not monotone: not moved
}


def _cnn_train_grads(model, x, ct, after):
    """Logits and gradients of a scratch CNN (or VGG) in training, ReLU after (or before) each
    pool, BatchNorm's apply outside the pool (inside it: `_train_call`, to float rounding)."""
    from unittest import mock

    def loss(model, x):
        logits, _ = model(x, train=True)
        return jnp.sum(logits * ct), logits

    with (
        mock.patch.object(layers, "ACT_AFTER_POOL", after),
        mock.patch.object(batch_stats, "NATIVE_POOLED", False),
    ):
        (_, logits), grads = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            nnx.clone(model), x
        )
    return logits, grads


@pytest.mark.parametrize("spec", sorted(_CNN_SPECS))
def test_a_scratch_cnn_pools_before_its_relu_in_training_with_the_same_results(spec):
    """The scratch CNN (models/cnn.py) max-pools a block's output before its ReLU in training:
    the same logits and gradients bit for bit, ReLU zeros (ties) included."""
    model = cnn.CNN(num_classes=5, **_CNN_SPECS[spec], rngs=nnx.Rngs(0))
    for unit in [model.stem, *(u for stage in model.stages for u in stage)]:
        shifted = unit.bn if unit.bn is not None and not unit.bn_after_act else unit.conv
        if shifted.bias is not None:  # mostly negative: many all-zero ReLU windows (ties)
            shifted.bias.set_value(jnp.full(shifted.bias.shape, -0.7))
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    ct = jax.random.normal(jax.random.key(2), (2, 5))
    if spec in ("batch_norm", "no_batch_norm"):  # the units whose ReLU moves
        stage1 = nnx.clone(model)(x, train=True)[1]["stage1"]  # the ReLU map block 1 pools
        windows = stage1.reshape(2, 8, 2, 8, 2, -1).max(axis=(2, 4))
        assert float(jnp.mean(windows == 0)) > 0.1
    (y_after, g_after), (y_before, g_before) = (
        _cnn_train_grads(model, x, ct, after) for after in (True, False)
    )
    np.testing.assert_array_equal(y_after, y_before)
    for a, b in zip(jax.tree.leaves(g_after), jax.tree.leaves(g_before), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_scratch_cnn_runs_relu_on_the_pooled_maps_in_training_only():
    """In training no ReLU (a ``maximum``) runs on a full-size block output; in evaluation it
    does, so the stage maps Grad-CAM differentiates against stay on the logits' path."""
    from unittest import mock

    model = cnn.CNN(num_classes=5, filters=(4, 8), rngs=nnx.Rngs(0))
    x = jnp.ones((2, 16, 16, 3))
    full = re.compile(r"f32\[2,(16,16,4|8,8,8)\]\{[0-9,]*\} maximum\(")

    def hlo(train, after=True):
        graphdef, state = nnx.split(model)

        def logits(state, x):
            return nnx.merge(graphdef, state)(x, train=train)[0]

        with mock.patch.object(layers, "ACT_AFTER_POOL", after):
            grads = jax.grad(lambda s, x: jnp.sum(logits(s, x)), argnums=(0, 1))
            return jax.jit(grads).lower(state, x).compile().as_text()

    assert not full.search(hlo(train=True))
    assert full.search(hlo(train=True, after=False))
    assert full.search(hlo(train=False))


def _train_call(module, x, ct, fused, call):
    """(output, gradients, running statistics after the call) of ``call(module, x)`` in
    training, BatchNorm's apply inside the native pool (``fused``) or before it."""
    from unittest import mock

    def loss(module, x):
        y = call(module, x)
        return jnp.sum(y * ct), y

    module = nnx.clone(module)
    with mock.patch.object(batch_stats, "NATIVE_POOLED", fused):
        jaxpr = str(jax.make_jaxpr(lambda x: call(nnx.clone(module), x))(x))
        (_, y), grads = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(module, x)
    assert ("jaxcls_max_pool_affine_fwd" in jaxpr) == fused  # not a silent fallback
    return y, grads, nnx.state(module, nnx.BatchStat)


def _assert_close_trees(a, b, what):
    """Equal to float rounding at the scale of the tree's largest value: a conv bias followed by
    BatchNorm has a gradient that is 0 but for rounding (~1e-7 here), on both sides."""
    scale = max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(a))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-5 * max(scale, 1e-6), err_msg=what)


def _tiny_vgg(batch_norm):
    return vgg.VGG(
        num_classes=5, cfg=((4,), (8, 8)), batch_norm=batch_norm, mlp_hidden=8, rngs=nnx.Rngs(0)
    )


@pytest.mark.parametrize("batch_norm", [True, False])
def test_vgg_pools_before_its_relu_in_training_with_the_same_results(batch_norm):
    """VGG's blocks end in conv -> [BatchNorm] -> ReLU -> max pool; in training the pool takes
    the map before the ReLU (`layers.norm_act_max_pooled`): the same logits and gradients, bit
    for bit, ReLU-zero ties included."""
    model = _tiny_vgg(batch_norm)
    for blk in [model.stem, *(b for stage in model.stages for b in stage)]:
        shifted = blk.bn if blk.bn is not None else blk.conv
        shifted.bias.set_value(jnp.full(shifted.bias.shape, -0.7))  # many all-zero windows
    x = jax.random.normal(jax.random.key(7), (2, 16, 16, 3))
    ct = jax.random.normal(jax.random.key(8), (2, 5))
    stage1 = nnx.clone(model).forward_features(x, train=True)[1]["stage1"]
    assert float(jnp.mean(stage1.reshape(2, 8, 2, 8, 2, -1).max(axis=(2, 4)) == 0)) > 0.1
    (y_after, g_after), (y_before, g_before) = (
        _cnn_train_grads(model, x, ct, after) for after in (True, False)
    )
    np.testing.assert_array_equal(y_after, y_before)
    for a, b in zip(jax.tree.leaves(g_after), jax.tree.leaves(g_before), strict=True):
        np.testing.assert_array_equal(a, b)


_FUSED_CASES = {
    # ResNet's / DenseNet's stem: 3x3 stride-2 windows that overlap, padded.
    "stem": (
        lambda: layers.ConvNormAct(3, 8, 3, stride=2, rngs=nnx.Rngs(0)),
        (2, 16, 16, 3),
        lambda m, x: m.max_pooled(x, 3, 2, "symmetric", train=True),
    ),
    # The scratch CNN: 2x2 windows after each block; odd sides round down; 2 convs in a block.
    "cnn": (
        lambda: cnn.CNN(num_classes=5, filters=(4, 20), convs_per_block=2, rngs=nnx.Rngs(0)),
        (2, 15, 15, 3),
        lambda m, x: m(x, train=True)[0],
    ),
    # VGG with BatchNorm: the same blocks, one conv then two (the second block's last pooled).
    "vgg_bn": (lambda: _tiny_vgg(True), (2, 16, 16, 3), lambda m, x: m(x, train=True)[0]),
    # Inception-v3's stem unit as Keras builds it: padded conv, BatchNorm without a scale, 3x3
    # stride-2 'valid' pool.
    "inception_keras_stem": (
        lambda: inception.ConvNormAct(
            3,
            8,
            3,
            padding=1,
            cfg=dict(dtype=jnp.float32, eps=1e-3, bn_scale=False),
            rngs=nnx.Rngs(0),
        ),
        (2, 15, 15, 3),
        lambda m, x: layers.unit_max_pooled(m, x, 3, 2, "valid", act="relu", train=True)[1],
    ),
}


@native_only
@pytest.mark.parametrize("case", sorted(_FUSED_CASES))
def test_batch_norm_applied_inside_the_native_pool_equals_it_applied_before(case):
    """In training a BatchNorm followed by the native max pool normalises the taps the pool reads
    (`layers.BatchNorm.max_pooled`): the same outputs, gradients and running statistics as
    BatchNorm's output pooled, to float rounding, ReLU-zero ties included."""
    make, shape, call = _FUSED_CASES[case]
    module = make()
    for bn in [m for _, m in nnx.iter_graph(module) if isinstance(m, layers.BatchNorm)]:
        bn.bias.set_value(jnp.full(bn.bias.shape, -0.7))  # many all-zero ReLU windows
        if bn.scale is not None:
            bn.scale.set_value(jnp.linspace(-1.5, 2.0, bn.scale.shape[0]))  # negative scales too
    x = jax.random.normal(jax.random.key(3), shape) * 2.0 + 1.0
    out = jax.eval_shape(lambda x: call(nnx.clone(module), x), x)
    ct = jax.random.normal(jax.random.key(4), out.shape)
    y_ref, g_ref, stats_ref = _train_call(module, x, ct, False, call)
    y, g, stats = _train_call(module, x, ct, True, call)
    _assert_close_trees(y_ref, y, "output")
    _assert_close_trees(g_ref, g, "gradients")
    # The running averages update once, from the same batch statistics.
    _assert_close_trees(stats_ref, stats, "running statistics")
    assert any(float(jnp.max(jnp.abs(v))) > 0 for v in jax.tree.leaves(stats))
