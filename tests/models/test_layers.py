"""Tests of the shared building blocks: padding modes, depthwise implementations, helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls.models import depthwise, layers


@pytest.mark.parametrize("size", [7, 8, 9, 32])
@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (3, 2), (5, 2), (7, 2)])
def test_same_tf_padding_matches_tensorflow_rule(size, kernel, stride):
    lo, hi = layers.get_padding("same_tf", size, kernel, stride)
    out = (size + lo + hi - kernel) // stride + 1
    assert out == -(-size // stride)  # TF 'SAME': ceil(size / stride)
    assert hi - lo in (0, 1)  # the odd pixel goes bottom/right


def test_symmetric_padding_is_pytorch_k_over_2():
    assert layers.get_padding("symmetric", 224, 3, 1) == (1, 1)
    assert layers.get_padding("symmetric", 224, 3, 2) == (1, 1)
    assert layers.get_padding("symmetric", 224, 5, 2) == (2, 2)
    assert layers.get_padding("symmetric", 224, 7, 2) == (3, 3)
    with pytest.raises(ValueError, match="padding must be one of"):
        layers.get_padding("same", 8, 3, 1)


@pytest.mark.parametrize("padding", ["same_tf", "symmetric"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [8, 9])
def test_depthwise_grouped_and_shifted_agree(padding, stride, kernel, size):
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, size, size + 1, 6))
    w = jax.random.normal(kk, (kernel, kernel, 1, 6))

    def f(impl):
        return lambda x, w: layers.depthwise_conv(x, w, stride, padding, impl)

    y_g = jax.jit(f("grouped"))(x, w)
    y_s = jax.jit(f("shifted"))(x, w)
    assert y_g.shape == y_s.shape
    np.testing.assert_allclose(y_s, y_g, rtol=1e-5, atol=1e-5)

    ct = jax.random.normal(kg, y_g.shape)
    loss = lambda impl: jax.jit(jax.grad(lambda x, w: jnp.sum(f(impl)(x, w) * ct), argnums=(0, 1)))
    gx_g, gw_g = loss("grouped")(x, w)
    gx_s, gw_s = loss("shifted")(x, w)
    np.testing.assert_allclose(gx_s, gx_g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw_s, gw_g, rtol=1e-4, atol=1e-4)


def test_depthwise_matches_direct_per_channel_convolution():
    x = jax.random.normal(jax.random.key(1), (1, 6, 6, 3))
    w = jax.random.normal(jax.random.key(2), (3, 3, 1, 3))
    y = layers.depthwise_conv(x, w, 1, "symmetric", "shifted")
    for ch in range(3):
        ref = jax.lax.conv_general_dilated(
            x[..., ch : ch + 1], w[..., ch : ch + 1], (1, 1), [(1, 1), (1, 1)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip
        np.testing.assert_allclose(y[..., ch : ch + 1], ref, rtol=1e-5, atol=1e-5)


def test_set_depthwise_impl_overrides_auto_and_restores():
    default = layers.resolve_depthwise_impl("auto")
    assert default == ("native" if jax.default_backend() == "cpu" else "grouped")
    with layers.set_depthwise_impl("grouped"):
        assert layers.resolve_depthwise_impl("auto") == "grouped"
        assert layers.resolve_depthwise_impl("shifted") == "shifted"  # explicit wins
    assert layers.resolve_depthwise_impl("auto") == default
    with pytest.raises(ValueError, match="depthwise impl"):
        layers.set_depthwise_impl("fast")


def test_depthwise_module_kernel_layout_and_bf16():
    m = layers.DepthwiseConv2d(8, 5, stride=2, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    assert m.kernel.shape == (5, 5, 1, 8)
    assert m.kernel.dtype == jnp.float32
    y = m(jnp.ones((2, 9, 9, 8)))
    assert y.shape == (2, 5, 5, 8) and y.dtype == jnp.bfloat16


def test_conv2d_same_tf_output_and_asymmetric_padding():
    conv = layers.Conv2d(1, 1, 3, stride=2, padding="same_tf", rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.ones((3, 3, 1, 1))
    x = jnp.ones((1, 4, 4, 1))
    y = conv(x)
    # TF SAME on 4 px, k3 s2: pad (0, 1) -> windows start at 0 and 2; the last window is clipped.
    np.testing.assert_allclose(y[0, :, :, 0], [[9.0, 6.0], [6.0, 4.0]])


def test_make_divisible_and_round_channels_follow_tf_rule():
    assert layers.make_divisible(32 * 1.4) == 48  # 44.8 rounds to the nearest multiple of 8
    assert layers.make_divisible(11) == 16  # 8 would lose more than 10% of 11
    assert layers.make_divisible(16 * 1.1) == 16
    assert layers.round_channels(1280, 1.4) == 1792
    assert layers.round_channels(1280, 1.0) == 1280
    assert layers.round_channels(16, 1.1, round_limit=0.0) == 16
    assert layers.round_repeats(3, 1.1) == 4


def test_drop_path_drops_whole_samples_and_is_identity_in_eval():
    dp = layers.DropPath(0.5, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones((64, 3, 3, 4))
    y = dp(x, train=True)
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample).tolist()) <= {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))  # one decision per sample
    assert 0 < int((per_sample[:, 0] == 0).sum()) < 64
    np.testing.assert_array_equal(dp(x, train=False), x)


def test_avg_pool_count_include_pad():
    x = jnp.ones((1, 4, 4, 1))
    incl = layers.avg_pool(x, 3, 1, "symmetric", count_include_pad=True)
    excl = layers.avg_pool(x, 3, 1, "symmetric", count_include_pad=False)
    assert float(incl[0, 0, 0, 0]) == pytest.approx(4 / 9)
    np.testing.assert_allclose(excl, 1.0)


def test_get_act_unknown_name():
    assert layers.get_act("silu") is layers.get_act("swish") is layers.silu
    with pytest.raises(ValueError, match="unknown activation"):
        layers.get_act("swishy")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_silu_equals_jax_nn_silu_in_value_and_gradient(dtype):
    """layers.silu is jax.nn.silu's function; its gradient, recomputed from the input, is within
    float rounding of the exact one (float64) over the range where the sigmoid saturates, and so of
    autodiff's."""
    x = jnp.concatenate([jnp.linspace(-60, 60, 6001), jnp.array([0.0, -1e-7, 1e-7])]).astype(dtype)
    np.testing.assert_array_equal(layers.silu(x), jax.nn.silu(x))
    g = jax.random.normal(jax.random.key(0), x.shape, dtype)
    got = jax.vjp(layers.silu, x)[1](g)[0]
    want = jax.vjp(jax.nn.silu, x)[1](g)[0]
    assert got.dtype == dtype
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    s64 = 1 / (1 + np.exp(-x64))
    exact = g64 * s64 * (1 + x64 * (1 - s64))
    eps = 5e-7 if dtype == jnp.float32 else 2e-2  # autodiff: 9.3e-7, 2.1e-2
    assert np.all(np.abs(np.asarray(got, np.float64) - exact) <= eps * np.abs(g64) + 1e-30)
    np.testing.assert_allclose(
        np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=4 * eps, atol=4 * eps
    )


def test_silu_gradient_keeps_no_sigmoid_map_from_the_forward_pass():
    """BatchNorm's apply, SiLU and a GEMM, differentiated: jax.nn.silu's gradient keeps the
    forward pass's sigmoid, so XLA writes it as a map of its own (3 map-sized fusions); with
    layers.silu's recomputed gradient the forward pass is one fusion (2)."""
    x, scale, bias, w = jnp.ones((64, 32, 32, 16)), jnp.ones(16), jnp.ones(16), jnp.ones((16, 16))

    def loss(x, scale, bias, w):
        y = layers.silu(x * scale + bias)
        return jnp.sum(jnp.einsum("bhwc,cd->bhwd", y, w) ** 2)

    def map_fusions():
        fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
        text = fn.lower(x, scale, bias, w).compile().as_text()
        entry = text[text.index("ENTRY") :].splitlines()
        return sum(" = f32[64,32,32,16]" in ln and " fusion(" in ln for ln in entry)

    assert map_fusions() == 2
    with layers.autodiff_silu():
        assert map_fusions() == 3


@pytest.mark.parametrize(
    "size,kernel,stride,padding",
    [
        (9, 5, 2, "same_tf"),  # asymmetric padding, stride 2 (dilated input gradient)
        (10, 3, 2, "symmetric"),
        (7, 5, 1, "valid"),
        (113, 3, 2, "same_tf"),  # >= 56x56 outputs: the batch-first kernel-gradient reduction
        (56, 5, 1, "symmetric"),
    ],
)
def test_shifted_custom_backward_equals_autodiff_of_the_tap_sum(size, kernel, stride, padding):
    kx, kk, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, (2, size, size - 1, 4))
    w = jax.random.normal(kk, (kernel, kernel, 1, 4))
    pads = (
        layers.get_padding(padding, x.shape[1], kernel, stride),
        layers.get_padding(padding, x.shape[2], kernel, stride),
    )

    y_shape = jax.eval_shape(lambda x, w: depthwise._shifted_sum(x, w, stride, pads), x, w)
    ct = jax.random.normal(kg, y_shape.shape)

    @jax.jit  # one compilation per case
    def both(x, w):
        def run(f):
            y, back = jax.vjp(lambda x, w: f(x, w, stride, pads), x, w)
            return y, back(ct)

        # plain autodiff of the tap sum (the reference formulation) vs the custom backward;
        # the public entry point uses the latter on CPU (and equals the grouped conv, above)
        public = layers.depthwise_conv(x, w, stride, padding, "shifted")
        return run(depthwise._shifted_sum), run(depthwise._shifted), public

    ref, new, public = both(x, w)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(new)):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))))
    np.testing.assert_allclose(public, ref[0], rtol=1e-6, atol=1e-6)


def test_shifted_backward_keeps_bf16():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4), jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (3, 3, 1, 4), jnp.bfloat16)
    dx, dw = jax.grad(
        lambda x, w: jnp.sum(
            layers.depthwise_conv(x, w, 2, "symmetric", "shifted").astype(jnp.float32)
        ),
        argnums=(0, 1),
    )(x, w)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16
    dx32, dw32 = jax.grad(
        lambda x, w: jnp.sum(layers.depthwise_conv(x, w, 2, "symmetric", "grouped")), argnums=(0, 1)
    )(x.astype(jnp.float32), w.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(dw, np.float32), dw32, rtol=3e-2, atol=0.2)
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx32, rtol=3e-2, atol=0.1)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_global_average_pool_is_the_mean_and_a_dot_on_cpu(dtype):
    """The CPU form (a product with ones: XLA:CPU's YNNPACK reduction was most of a batch-1
    ResNet-18 forward pass) equals the mean, in value and gradient, float32 and bf16."""
    x = jax.random.normal(jax.random.key(0), (3, 7, 5, 16)).astype(dtype)
    got = jax.jit(layers.global_pool)(x)
    assert got.dtype == dtype and got.shape == (3, 16)
    want = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tol, atol=tol)
    grad = jax.grad(lambda x: jnp.sum(layers.global_pool(x).astype(jnp.float32) ** 2))(x)
    want_grad = jax.grad(lambda x: jnp.sum(jnp.mean(x.astype(jnp.float32), axis=(1, 2)) ** 2))(x)
    np.testing.assert_allclose(np.asarray(grad, np.float32), want_grad, rtol=tol, atol=tol)
    hlo = jax.jit(layers.global_pool).lower(x).compile().as_text()
    assert "reduce" not in hlo and " dot(" in hlo  # no reduction for YNNPACK to take
    assert jnp.array_equal(layers.global_pool(x, "max"), jnp.max(x, axis=(1, 2)))
