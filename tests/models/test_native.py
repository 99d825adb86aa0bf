"""The native XLA:CPU kernels (jaxcls/native): built here; the depthwise kernels equal to XLA's
grouped convolution and the stem convolution (1-4 input channels) to XLA's convolution, in value
and gradients; batch-parallel under sharding; replaced by the pure-JAX forms where they cannot be
built."""

import os
import re
import subprocess
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcls import native
from jaxcls.models import batch_stats, conv, depthwise, layers, pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_native_kernels_build_on_this_machine_and_auto_uses_them():
    assert native.available(), native.unavailable_reason()
    assert os.path.exists(native.library_path())
    assert layers.resolve_depthwise_impl("auto") == "native"


def _value_and_grads(impl, x, w, stride, padding, ct):
    def f(x, w):
        return layers.depthwise_conv(x, w, stride, padding, impl)

    y, back = jax.vjp(f, x, w)
    return (y, *back(ct))


@pytest.mark.parametrize(
    "shape,kernel,stride,padding",
    [
        ((2, 9, 8, 6), 5, 2, "same_tf"),  # asymmetric padding, stride 2
        ((3, 10, 11, 5), 3, 2, "symmetric"),  # odd channel count, non-square map
        ((2, 7, 7, 4), 5, 1, "valid"),
        ((1, 16, 16, 24), 3, 1, "symmetric"),  # batch 1
        ((2, 8, 8, 17), 3, 2, "same_tf"),
        ((2, 6, 6, 8), 7, 1, "symmetric"),  # kernel larger than half the map
        # more channels than the kernels sum in registers at once (4 vectors): several chunks
        # per pixel, the last one partial
        ((2, 7, 6, 72), 3, 1, "symmetric"),
        ((2, 11, 9, 40), 3, 3, "same_tf"),  # stride 3: each input pixel, at most one tap an axis
    ],
)
def test_native_equals_grouped_conv_value_and_gradients(shape, kernel, stride, padding):
    kx, kk, kg = jax.random.split(jax.random.key(7), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kk, (kernel, kernel, 1, shape[-1]))
    y_shape = jax.eval_shape(
        lambda x, w: layers.depthwise_conv(x, w, stride, padding, "grouped"), x, w
    )
    ct = jax.random.normal(kg, y_shape.shape)
    with jax.default_matmul_precision("highest"):
        ref = jax.jit(_value_and_grads, static_argnums=(0, 3, 4))(
            "grouped", x, w, stride, padding, ct
        )
    got = jax.jit(_value_and_grads, static_argnums=(0, 3, 4))("native", x, w, stride, padding, ct)
    for name, a, b in zip(("output", "input gradient", "kernel gradient"), ref, got):
        assert a.shape == b.shape and b.dtype == jnp.float32, name
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))), err_msg=name
        )


def _expanded(x, w):
    """A 1x1 expansion of ``x`` by ``w`` [1, 1, C, 24], BatchNorm, ReLU6 and a 3x3 depthwise
    convolution in training, with BatchNorm's gradient built in the expansion's kernel."""
    scale, bias = jnp.linspace(0.5, 2.0, 24), jnp.linspace(-0.5, 1.0, 24)
    kernel, pads = jnp.full((3, 3, 1, 24), 1 / 9), ((1, 1), (1, 1))
    op = batch_stats.expand_normalize_act_depthwise_train
    return op(x, w, scale, bias, 1e-5, "relu6", kernel, 1, pads)[0]


BATCH_PARALLEL = {
    # op: (its loss on (x, w), x's shape, w's shape, custom call prefix, per-device x, calls)
    "depthwise": (
        lambda x, w: layers.depthwise_conv(x, w, 2, "same_tf", "native"),
        (16, 12, 12, 8),
        (3, 3, 1, 8),
        "jaxcls_depthwise",
        "f32[2,12,12,8]",
    ),
    "stem conv": (
        lambda x, w: conv.conv2d(x, w, stride=2, pads=((0, 1), (0, 1)), impl="native"),
        (16, 12, 12, 3),
        (3, 3, 3, 16),
        "jaxcls_stem_conv",
        "f32[2,12,12,3]",
    ),
    "dense conv": (
        lambda x, w: conv.conv2d(x, w, stride=1, pads=((1, 1), (1, 1)), impl="native"),
        (16, 12, 12, 8),
        (3, 3, 8, 8),
        "jaxcls_conv_",
        "f32[2,12,12,8]",
    ),
    # A 1x1 stride-1 convolution ('taps') with more than 48 input channels: XLA's GEMMs but the
    # native weight gradient.
    "pointwise conv": (
        lambda x, w: conv.conv2d(x, w, impl="auto"),
        (16, 12, 12, 56),
        (1, 1, 56, 8),
        "jaxcls_conv_wgrad",
        "f32[2,12,12,56]",
    ),
    # ... with at most 48: both gradients from the one native kernel.
    "pointwise conv, few input channels": (
        lambda x, w: conv.conv2d(x, w, impl="auto"),
        (16, 12, 12, 8),
        (1, 1, 8, 24),
        "jaxcls_pointwise_bwd",
        "f32[2,12,12,8]",
    ),
    # ... and building the gradient of the BatchNorm + ReLU6 after it (MobileNetV2's expansions).
    "pointwise conv building batch norm's gradient": (
        lambda x, w: _expanded(x, w),
        (16, 12, 12, 8),
        (1, 1, 8, 24),
        "jaxcls_pointwise_bn_bwd",
        "f32[2,12,12,8]",
    ),
    "max pool": (  # w: a per-channel scale before the pool, so that it has a gradient
        lambda x, w: pool.max_pool(x * w, 3, 2, "symmetric", "native"),
        (16, 12, 12, 8),
        (8,),
        "jaxcls_max_pool",
        "f32[2,12,12,8]",
    ),
    # BatchNorm applied inside the pool: w is BatchNorm's scale; the sums over the batch add up
    # over the devices (an all-reduce), the pool kernels run per device.
    "batch norm inside max pool": (
        lambda x, w: batch_stats.normalize_max_pool_train(
            x, w, jnp.zeros_like(w), 1e-5, 3, 2, ((1, 1), (1, 1))
        )[0],
        (16, 12, 12, 8),
        (8,),
        "jaxcls_max_pool_affine",
        "f32[2,12,12,8]",
    ),
}
# The same as "dense conv", every call as Winograd's F(2x2, 3x3) (the test lowers its thresholds:
# tiles and, for the weight gradient, input channels).
BATCH_PARALLEL["dense conv, Winograd's"] = BATCH_PARALLEL["dense conv"]
# Native calls per train step: the forward pass and one backward kernel (the depthwise kernel's
# both gradients; the stem's weight gradient), and for a dense stride-1 convolution the forward
# kernel again for the input gradient; a 1x1 stride-1 convolution's weight gradient (or, with few
# input channels, both its gradients); max pooling's forward pass and gradient.
CALLS = {
    "depthwise": 2,
    "stem conv": 2,
    "dense conv": 3,
    "dense conv, Winograd's": 3,
    "pointwise conv": 1,
    "pointwise conv, few input channels": 1,
    "pointwise conv building batch norm's gradient": 1,
    "max pool": 2,
    "batch norm inside max pool": 2,
}


@pytest.mark.parametrize("op", sorted(BATCH_PARALLEL))
def test_native_kernels_are_batch_parallel_over_a_sharded_batch(op, monkeypatch):
    """Over 8 devices each device runs the kernels on its own 2 images (no all-gather), and the
    result equals the single-device one (the dense kernels in one form on both sides)."""
    fn, x_shape, w_shape, target, local = BATCH_PARALLEL[op]
    winograd = "Winograd" in op
    monkeypatch.setattr(conv, "NATIVE_WINOGRAD", winograd)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv, "WINOGRAD_WGRAD_MIN_CHANNELS", 1)
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape)

    def loss(x, w):
        y = fn(x, w)
        return jnp.sum(y * y)

    step = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1)),
        in_shardings=(NamedSharding(mesh, P("data")), NamedSharding(mesh, P())),
    )
    hlo = step.lower(x, w).compile().as_text()
    calls = [ln for ln in hlo.splitlines() if f'custom_call_target="{target}' in ln]
    assert len(calls) == CALLS[op]
    assert all(local in ln for ln in calls), calls  # per-device operands: 2 images
    assert sum("winograd = 1" in ln for ln in calls) == (CALLS[op] if winograd else 0)
    assert "all-gather" not in hlo
    (v, (gx, gw)) = step(x, w)
    (v1, (gx1, gw1)) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, w)
    assert gx.sharding.spec == P("data")
    np.testing.assert_allclose(v, v1, rtol=1e-5)
    np.testing.assert_allclose(gx, gx1, rtol=1e-5, atol=1e-5)
    # Winograd's weight gradient transforms each device's partial sums, which are larger than
    # the gradient (G^T dU G cancels): summed over devices in another order, it differs by up to
    # ~4e-7 of its largest value (direct: within 1e-4 absolute).
    gw_atol = 1e-6 * float(jnp.max(jnp.abs(gw1))) if winograd else 1e-4
    if "building batch norm" in op:
        # BatchNorm's statistics summed over 8 devices in another order: the expansion's weight
        # gradient (largest 118) moved by 3.4e-4, by 2.8e-4 with BatchNorm's gradient written.
        gw_atol = 1e-5 * float(jnp.max(jnp.abs(gw1)))
    np.testing.assert_allclose(gw, gw1, rtol=1e-5, atol=gw_atol)


def test_native_falls_back_to_shifted_for_bf16():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4), jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (3, 3, 1, 4), jnp.bfloat16)
    y = jax.jit(lambda x, w: layers.depthwise_conv(x, w, 1, "symmetric", "native"))(x, w)
    ref = layers.depthwise_conv(x, w, 1, "symmetric", "shifted")
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(ref, np.float32))


PROBE = """
import jax, jax.numpy as jnp
from jaxcls import native
from jaxcls.models import conv, layers
y = layers.depthwise_conv(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 1, 3)), 1, 'symmetric')
stem = conv.conv2d(jnp.ones((1, 5, 5, 3)), jnp.ones((3, 3, 3, 2)), pads=((1, 1), (1, 1)))
print(native.available(), layers.resolve_depthwise_impl('auto'),
      conv.resolve_conv_impl('auto', (3, 3), (5, 5), 3), float(y[0, 2, 2, 0]),
      float(stem[0, 2, 2, 0]))
print('REASON', native.unavailable_reason())
"""


@pytest.mark.parametrize(
    "env,reason",
    [
        ({"JAXCLS_NATIVE": "0"}, "JAXCLS_NATIVE=0"),
        ({"CXX": "/bin/false"}, "failed"),  # a compiler that fails: no library, a warning
    ],
)
def test_without_native_kernels_auto_uses_the_pure_jax_form(tmp_path, env, reason):
    run_env = dict(os.environ, JAXCLS_NATIVE_CACHE=str(tmp_path), PYTHONPATH=REPO, **env)
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=run_env, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    first, why = r.stdout.strip().splitlines()[-2:]
    assert first == "False shifted xla 9.0 27.0"
    assert reason in why
    if "CXX" in env:
        assert "native CPU kernels unavailable" in r.stderr
        assert os.listdir(tmp_path) == []  # no half-written library left behind


def test_native_kernels_compile_into_an_empty_cache(tmp_path):
    """A fresh machine: the library is built on first use into the cache and then used."""
    run_env = dict(os.environ, JAXCLS_NATIVE_CACHE=str(tmp_path), PYTHONPATH=REPO)
    r = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=run_env, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-2] == "True native native 9.0 27.0"
    built = os.listdir(tmp_path)
    assert len(built) == 1 and built[0].startswith("jaxcls_native_") and built[0].endswith(".so")


def test_depthwise_impl_choices_are_validated():
    assert "native" in depthwise.DEPTHWISE_IMPLS
    with pytest.raises(ValueError, match="depthwise impl"):
        layers.resolve_depthwise_impl("ffi")


def test_native_op_registers_its_kernels_on_first_use(tmp_path):
    """The op builds/registers the FFI targets itself: no prior native.available() call needed."""
    probe = (
        "import jax.numpy as jnp; from jaxcls.models import depthwise; "
        "y = depthwise._native(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 2)), 1, ((1, 1), (1, 1))); "
        "print(float(y[0, 1, 1, 0]), float(y[0, 0, 0, 0]))"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["9.0", "4.0"]


STEM_CASES = [
    # (input shape, kernel, output channels, stride, padding)
    ((2, 9, 8, 3), (3, 3), 16, 1, "symmetric"),  # the scratch CNN's stem, non-square map
    ((3, 10, 11, 1), (3, 3), 5, 2, "same_tf"),  # grey; 5 outputs (no full vector); asymmetric pad
    ((2, 12, 12, 4), (3, 3), 40, 1, "valid"),  # 4 channels; 40 = a 32-wide chunk and 8 more
    ((1, 16, 16, 3), (7, 7), 24, 2, "symmetric"),  # ResNet's stem, batch 1; 24 = 16 + 8
    # Rows wide enough for the register-tiled blocks of 6-12 pixels (AVX-512) between the borders:
    ((2, 30, 40, 3), (7, 7), 64, 2, "symmetric"),  # ResNet's stem: 4 vectors x 6 pixels
    ((2, 5, 36, 3), (3, 3), 32, 1, "symmetric"),  # 2 vectors x 12 pixels
    ((1, 4, 30, 1), (3, 3), 16, 1, "same_tf"),  # grey, one vector x 12 pixels
    ((2, 8, 8, 2), (5, 5), 64, 1, "same_tf"),
    ((2, 7, 9, 3), (1, 3), 8, 1, "symmetric"),  # a non-square kernel
    ((2, 6, 6, 3), (3, 3), 33, 3, "valid"),  # stride 3, one channel past a chunk
]


def _conv_value_and_grads(impl, x, w, stride, pads, ct):
    def f(x, w):
        return conv.conv2d(x, w, stride=stride, pads=pads, impl=impl)

    y, back = jax.vjp(f, x, w)
    return (y, *back(ct))


@pytest.mark.parametrize("shape,kernel,out,stride,padding", STEM_CASES)
def test_native_stem_conv_equals_xla_conv_value_and_gradients(shape, kernel, out, stride, padding):
    kx, kk, kg = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kk, (*kernel, shape[-1], out))
    pads = tuple(layers.get_padding(padding, shape[1 + i], kernel[i], stride) for i in range(2))
    y_shape = jax.eval_shape(lambda x, w: conv.conv2d(x, w, stride=stride, pads=pads), x, w)
    ct = jax.random.normal(kg, y_shape.shape)
    run = jax.jit(_conv_value_and_grads, static_argnums=(0, 3, 4))
    hlo = run.lower("native", x, w, stride, pads, ct).compile().as_text()
    for target in ("jaxcls_stem_conv_fwd", "jaxcls_stem_conv_wgrad"):
        assert f'custom_call_target="{target}"' in hlo, target  # not a silent fallback
    with jax.default_matmul_precision("highest"):
        ref = run("xla", x, w, stride, pads, ct)
    got = run("native", x, w, stride, pads, ct)
    for name, a, b in zip(("output", "input gradient", "weight gradient"), ref, got):
        assert a.shape == b.shape and b.dtype == jnp.float32, name
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))), err_msg=name
        )


def test_auto_runs_convolutions_with_few_input_channels_natively_on_cpu():
    assert conv.resolve_conv_impl("auto", (3, 3), (32, 32), 3) == "native"
    assert conv.resolve_conv_impl("auto", (7, 7), (112, 112), 4) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (32, 32), 5) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (2, 2), 3) == "patches"  # tiny maps first
    assert conv.resolve_conv_impl("auto", (1, 1), (8, 8), 3) == "taps"
    with conv.set_conv_impl("xla"):  # an override wins (the exporter's portable form)
        assert conv.resolve_conv_impl("auto", (3, 3), (32, 32), 3) == "xla"


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("channels", [3, 16])  # the stem kernel, the dense kernels
def test_native_conv_falls_back_to_xla_for_other_dtypes(dtype, channels):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, channels), dtype)
    w = jax.random.normal(jax.random.key(1), (3, 3, channels, 8), dtype)
    pads = ((1, 1), (1, 1))
    fn = jax.jit(lambda x, w: conv.conv2d(x, w, pads=pads, impl="native"))
    assert "jaxcls_" not in fn.lower(x, w).compile().as_text()
    ref = conv.conv2d(x, w, pads=pads, impl="xla")
    assert fn(x, w).dtype == dtype
    np.testing.assert_array_equal(np.asarray(fn(x, w), np.float32), np.asarray(ref, np.float32))


DENSE_CASES = [
    # (input shape, kernel, output channels, stride, padding: a mode or explicit pads)
    ((2, 9, 8, 6), (3, 3), 16, 1, "symmetric"),  # 6 channels: 3 + 3 on 2 threads; non-square
    ((3, 10, 11, 13), (3, 3), 20, 2, "same_tf"),  # stride 2, asymmetric padding; 20 = 16 + 4
    ((2, 12, 12, 32), (3, 3), 72, 1, "valid"),  # 72 = a 64-wide chunk and 8 more
    ((1, 7, 7, 24), (5, 5), 40, 1, "same_tf"),  # batch 1, a 5x5 kernel
    ((2, 6, 9, 8), (1, 3), 8, 1, "symmetric"),  # a non-square kernel
    ((2, 9, 9, 24), (1, 1), 40, 2, "symmetric"),  # a projection shortcut: 1x1, stride 2, odd map
    ((2, 5, 5, 64), (3, 3), 130, 3, "valid"),  # stride 3; 130 = 2 x 64 + 2
    ((2, 6, 6, 8), (3, 3), 16, 1, ((3, 0), (0, 2))),  # top padding >= the kernel: XLA's dx
    # 350 input channels (weight panels of 806 KB per 64-wide chunk), 70 = 64 + 6 outputs
    ((2, 5, 4, 350), (3, 3), 70, 1, "symmetric"),
    # Few output pixels: the forward kernel reads the weights in place (80 = 64 + 16 outputs)
    ((1, 5, 6, 24), (3, 3), 80, 1, "symmetric"),
    # strided, 32 output pixels; the input gradient's phases too (80 channels back)
    ((2, 7, 7, 80), (3, 3), 80, 2, "symmetric"),
    # inputs of over 2 MB: with AVX2 the weight gradient's tasks take runs of output chunks
    # (72 = 4 x 16 + 8; 40 = 16 + 16 + 8) over groups of input channels
    ((2, 24, 24, 480), (3, 3), 72, 2, "symmetric"),
    ((2, 24, 24, 480), (3, 3), 40, 1, "symmetric"),
]


STRIDED_INPUT_GRAD_CASES = [
    # (input shape, kernel, stride, pads): every output phase, from 2x2 taps down to none
    ((2, 8, 8, 5), (3, 3), 2, ((0, 1), (0, 1))),  # TF 'SAME' on an even map
    ((2, 9, 7, 5), (3, 3), 2, ((1, 1), (1, 1))),  # PyTorch padding; odd maps, one phase shorter
    ((2, 6, 6, 5), (1, 1), 2, ((0, 0), (0, 0))),  # a projection shortcut: 3 phases get zeros
    ((1, 7, 8, 3), (3, 3), 2, ((2, 0), (2, 1))),  # padding 2 before: a phase crops the gradient
    ((2, 11, 10, 4), (5, 5), 3, ((1, 3), (4, 0))),  # stride 3, a 5x5 kernel
    ((1, 2, 3, 2), (3, 3), 2, ((1, 1), (1, 1))),  # maps barely larger than the stride
    ((2, 10, 9, 3), (2, 4), 3, ((1, 0), (0, 2))),  # non-square kernel, taps < stride on one axis
]


@pytest.mark.parametrize("shape,kernel,stride,pads", STRIDED_INPUT_GRAD_CASES)
def test_strided_input_grad_by_phases_equals_xlas_transposed_conv(shape, kernel, stride, pads):
    kx, kk, kg = jax.random.split(jax.random.key(8), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kk, (*kernel, shape[-1], 6))
    g = jax.random.normal(kg, (shape[0], *conv.output_hw(shape[1:3], kernel, stride, pads), 6))
    with jax.default_matmul_precision("highest"):
        ref = conv._xla_input_grad(x, w, g, stride, pads)
    got = jax.jit(conv._strided_input_grad, static_argnums=(3, 4))(x, w, g, stride, pads)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.parametrize("winograd", [False, True], ids=["direct", "winograd"])
@pytest.mark.parametrize("shape,kernel,out,stride,padding", DENSE_CASES)
def test_native_dense_conv_equals_xla_conv_value_and_gradients(
    shape, kernel, out, stride, padding, winograd, monkeypatch
):
    """Both forms of the 3x3 stride-1 kernels (forward, input and weight gradients): Winograd's
    F(2x2, 3x3) for every such call (its tile and channel thresholds lowered to 1), or none."""
    monkeypatch.setattr(conv, "NATIVE_WINOGRAD", winograd)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv, "WINOGRAD_WGRAD_MIN_CHANNELS", 1)
    kx, kk, kg = jax.random.split(jax.random.key(5), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kk, (*kernel, shape[-1], out))
    if isinstance(padding, str):
        pads = tuple(layers.get_padding(padding, shape[1 + i], kernel[i], stride) for i in range(2))
    else:
        pads = padding
    y_shape = jax.eval_shape(lambda x, w: conv.conv2d(x, w, stride=stride, pads=pads), x, w)
    ct = jax.random.normal(kg, y_shape.shape)
    # A fresh function per case: no trace cached under the other setting of NATIVE_WINOGRAD.
    run = jax.jit(lambda *a: _conv_value_and_grads(*a), static_argnums=(0, 3, 4))
    hlo = run.lower("native", x, w, stride, pads, ct).compile().as_text()
    # Not a silent fallback: the forward kernel, and again for the input gradient where padding
    # before is smaller than the kernel (at stride s once per output phase that a kernel tap
    # reaches: min(s, k) per axis), and the weight gradient kernel.
    native_dx = pads[0][0] < kernel[0] and pads[1][0] < kernel[1]
    phases = min(stride, kernel[0]) * min(stride, kernel[1]) if native_dx else 0
    assert hlo.count('custom_call_target="jaxcls_conv_fwd"') == 1 + phases
    assert hlo.count('custom_call_target="jaxcls_conv_wgrad"') == 1
    # Winograd's: the forward kernel, the input gradient's, the weight gradient.
    winograd_calls = (2 + phases) if winograd and (kernel, stride) == ((3, 3), 1) else 0
    assert hlo.count("winograd = 1") == winograd_calls
    with jax.default_matmul_precision("highest"):
        ref = run("xla", x, w, stride, pads, ct)
    got = run("native", x, w, stride, pads, ct)
    for name, a, b in zip(("output", "input gradient", "weight gradient"), ref, got):
        assert a.shape == b.shape and b.dtype == jnp.float32, name
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))), err_msg=name
        )


def test_winograd_is_picked_for_3x3_stride_1_calls_with_enough_tiles_and_few_channels():
    """conv.winograd_fits: >= 128 2x2 output tiles in the call (this device's images), a 3x3
    stride-1 kernel, at most 256 x 256 channels; and a real call follows it."""
    assert conv.winograd_fits(2, (16, 16), (3, 3, 32, 40), 1)  # 2 x 8 x 8 = 128 tiles
    assert conv.winograd_fits(1, (31, 31), (3, 3, 256, 256), 1)  # 16 x 16 (odd map, rounded up)
    assert conv.winograd_fits(1, (28, 28), (3, 3, 128, 128), 1)  # batch 1: 196 tiles
    assert not conv.winograd_fits(1, (16, 16), (3, 3, 32, 40), 1)  # 64 tiles
    assert not conv.winograd_fits(1, (22, 20), (3, 3, 32, 40), 1)  # 11 x 10 = 110 tiles
    assert not conv.winograd_fits(1, (14, 14), (3, 3, 256, 256), 1)  # batch 1: 49 tiles
    assert not conv.winograd_fits(32, (7, 7), (3, 3, 512, 512), 1)  # 512 x 512 channels
    assert not conv.winograd_fits(32, (28, 28), (3, 3, 64, 64), 2)  # stride 2
    assert not conv.winograd_fits(32, (28, 28), (1, 1, 64, 64), 1)  # 1x1
    assert not conv.winograd_fits(32, (28, 28), (5, 5, 64, 64), 1)

    def count(batch):
        x, w = jnp.ones((batch, 16, 16, 32)), jnp.ones((3, 3, 32, 40))
        f = jax.jit(lambda x, w: conv.conv2d(x, w, pads=((1, 1), (1, 1)), impl="native"))
        return f.lower(x, w).compile().as_text().count("winograd = 1")

    assert (count(2), count(1)) == (1, 0)


def test_auto_runs_3x3_convolutions_natively_by_channels_on_cpu():
    """3x3 stride-1 convolutions with up to 256 channels are 'native' (forward pass and both
    gradients), wider ones too where the output of all images has at most NATIVE_FEW_PIXELS
    pixels (batch-1 inference), and 3x3 stride-2 ones at any width (forward pass and both
    gradients); wider stride-1 over more pixels, other strides and other kernels stay XLA's."""
    assert conv.resolve_conv_impl("auto", (3, 3), (16, 16), 32, 64) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (56, 56), 128, 128) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (14, 14), 256, 256) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (7, 7), 512, 512) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (14, 14), 256, 512) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (7, 7), 512, 512, batch=1) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (7, 7), 512, 512, batch=10) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (7, 7), 512, 512, batch=11) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (14, 14), 256, 512, batch=2) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (14, 14), 256, 512, batch=3) == "xla"
    assert conv.resolve_conv_impl("auto", (5, 5), (7, 7), 512, 512, batch=1) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (16, 16), 32, 64, stride=2) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (7, 7), 256, 512, stride=2) == "native"
    assert conv.resolve_conv_impl("auto", (3, 3), (16, 16), 32, 64, stride=3) == "xla"
    assert conv.resolve_conv_impl("auto", (5, 5), (16, 16), 32, 64) == "xla"
    assert conv.resolve_conv_impl("auto", (5, 5), (16, 16), 32, 64, stride=2) == "xla"
    # 1x1: 'taps', except stride 2 (a projection shortcut) on a map that is not tiny.
    assert conv.resolve_conv_impl("auto", (1, 1), (28, 28), 64, 128, stride=2) == "native"
    assert conv.resolve_conv_impl("auto", (1, 1), (7, 7), 1024, 2048, stride=2) == "native"
    assert conv.resolve_conv_impl("auto", (1, 1), (2, 2), 64, 128, stride=2) == "taps"
    assert conv.resolve_conv_impl("auto", (1, 1), (28, 28), 64, 128) == "taps"
    assert conv.resolve_conv_impl("auto", (3, 3), (2, 2), 64, 128, stride=2) == "patches"
    assert conv.resolve_conv_impl("auto", (3, 3), (2, 2), 32, 64) == "patches"  # tiny maps first

    def loss(x, w, stride):
        return jnp.sum(conv.conv2d(x, w, stride=stride, pads=((1, 1), (1, 1))) ** 2)

    # (kernel, output channels, stride, batch) -> native (forward, weight gradient) calls; the
    # forward kernel gives the input gradient too: of a stride-1 convolution in one call, of a
    # 3x3 stride-2 one in four (one per output phase); the 1x1 here, padded by 1 (padding before
    # not smaller than the kernel), keeps XLA's. 512 channels at stride 1: native over 2 x 8 x 8
    # output pixels, XLA's over 16 x 8 x 8.
    cases = {
        (3, 256, 1, 2): (2, 1),
        (3, 512, 1, 2): (2, 1),
        (3, 512, 1, 16): (0, 0),
        (3, 512, 2, 2): (5, 1),
        (1, 512, 2, 2): (1, 1),
    }
    for (k, o, stride, batch), native_calls in cases.items():
        fn = jax.jit(jax.value_and_grad(loss, (0, 1)), static_argnums=2)
        x = jnp.ones((batch, 8, 8, 16))
        hlo = fn.lower(x, jnp.ones((k, k, 16, o)), stride).compile().as_text()
        calls = tuple(hlo.count(f'custom_call_target="jaxcls_conv_{k}"') for k in ("fwd", "wgrad"))
        assert calls == native_calls, (k, o, stride, batch)


@pytest.mark.parametrize("stride", [1, 2])
def test_wide_convolution_over_few_pixels_runs_natively_and_equals_xla(stride):
    """Batch-1 inference's deep layers: a 3x3 convolution of 300 -> 150 channels (a second slice
    of the weights' input channels, an output chunk narrower than a vector) over a 7x7 map (or
    14x14 -> 7x7 at stride 2) at batch 1 runs as the native few-pixels kernel, with the same
    output and gradients as XLA's convolution within 1e-5."""
    kx, kk, kg = jax.random.split(jax.random.key(11), 3)
    hw = 7 * stride
    x = jax.random.normal(kx, (1, hw, hw, 300))
    w = jax.random.normal(kk, (3, 3, 300, 150)) * 0.05
    g = jax.random.normal(kg, (1, 7, 7, 150))
    pads = ((1, 1), (1, 1))

    def run(impl):
        y, back = jax.vjp(lambda x, w: conv.conv2d(x, w, stride=stride, pads=pads, impl=impl), x, w)
        return (y, *back(g))

    hlo = jax.jit(lambda x, w: conv.conv2d(x, w, stride=stride, pads=pads)).lower(x, w)
    assert 'custom_call_target="jaxcls_conv_fwd"' in hlo.compile().as_text()
    assert "few = 1" in hlo.as_text()  # the few-pixels form of the forward kernel
    for got, want in zip(run("auto"), run("xla"), strict=True):
        scale = float(jnp.max(jnp.abs(want)))
        assert float(jnp.max(jnp.abs(got - want))) <= 1e-5 * scale


POINTWISE_CASES = [
    # (input shape, output channels): where the native weight gradient runs (at least as many
    # input as output channels, or enough pixels), with odd maps and channel counts that fill no
    # vector
    ((2, 9, 7, 13), 6),
    ((3, 5, 6, 350), 70),
    ((1, 64, 64, 8), 24),  # expanding over 4096 pixels (the test's threshold)
    ((4, 3, 3, 24), 24),
    # with AVX2's 16-channel chunks, a task's run of chunks ending in a padded one (16 + 12) and
    # runs of four, a shorter run and a narrower chunk (9 x 16 + 6)
    ((2, 6, 5, 40), 28),
    ((2, 4, 4, 160), 150),
    ((2, 24, 24, 1000), 40),  # an input of 4.6 MB (runs of chunks, above)
]


@pytest.mark.parametrize("shape,out", POINTWISE_CASES)
def test_pointwise_conv_takes_the_native_weight_gradient_with_equal_results(
    shape, out, monkeypatch
):
    """A 1x1 stride-1 convolution ('auto': the taps form) keeps XLA's GEMMs for the output and
    the input gradient and takes its weight gradient from the native kernel: one call, and the
    same value and gradients as XLA's convolution."""
    monkeypatch.setattr(conv, "POINTWISE_MIN_PIXELS", 4096)
    monkeypatch.setattr(conv, "NATIVE_POINTWISE_BWD", False)  # tested below
    _pointwise_conv_equals_xla(shape, out, 6, {"jaxcls_conv_wgrad": 1, "jaxcls_conv_fwd": 0})


def _pointwise_conv_equals_xla(shape, out, seed: int, calls: dict[str, int]):
    """A 1x1 stride-1 convolution of an input of ``shape`` to ``out`` channels ('auto') has
    ``calls[target]`` calls of each native kernel in its value-and-gradients program, and the
    same value and gradients as XLA's convolution (float32, within 1e-5). Returns the traced
    program's text."""
    kx, kk, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kk, (1, 1, shape[-1], out))
    ct = jax.random.normal(kg, (*shape[:3], out))
    pads = ((0, 0), (0, 0))
    run = jax.jit(lambda *a: _conv_value_and_grads(*a), static_argnums=(0, 3, 4))
    hlo = run.lower("auto", x, w, 1, pads, ct).compile().as_text()
    for target, n in calls.items():
        assert hlo.count(f'custom_call_target="{target}"') == n, target
    with jax.default_matmul_precision("highest"):
        ref = run("xla", x, w, 1, pads, ct)
    got = run("auto", x, w, 1, pads, ct)
    for name, a, b in zip(("output", "input gradient", "weight gradient"), ref, got):
        assert a.shape == b.shape and b.dtype == jnp.float32, name
        np.testing.assert_allclose(
            b, a, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(a))), err_msg=name
        )
    return str(
        jax.make_jaxpr(lambda *a: _conv_value_and_grads("auto", a[0], a[1], 1, pads, a[2]))(
            x, w, ct
        )
    )


POINTWISE_BWD_CASES = [
    # (input shape, output channels) for the native kernel of both gradients: input channels
    # from 1 to 48 (1 to 6 vectors of 8 with AVX2: each input-gradient tile), some filling no
    # vector, output channels filling none or several weight-gradient tiles, images whose pixels
    # end mid-chunk (32) and mid-tile, one image.
    ((2, 9, 7, 1), 8),
    ((3, 5, 6, 5), 17),
    ((2, 11, 10, 13), 6),
    ((1, 16, 16, 16), 96),
    ((2, 7, 9, 20), 100),
    ((2, 8, 8, 24), 144),
    ((3, 6, 5, 32), 16),
    ((2, 5, 7, 33), 40),
    ((2, 6, 6, 48), 288),
    ((2, 5, 6, 56), 24),  # 7 vectors: the input gradient in two blocks (6 + 1 vectors with AVX2)
]


@pytest.mark.parametrize("shape,out", POINTWISE_BWD_CASES)
def test_pointwise_conv_with_few_input_channels_takes_both_gradients_natively(
    shape, out, monkeypatch
):
    """A 1x1 stride-1 convolution with few input channels (at most 48, here 64 to test the
    kernel's blocks of input channels too) keeps XLA's GEMM for its output and takes both
    gradients from one native kernel call (no weight-gradient kernel, no GEMM for the input
    gradient): the same value and gradients as XLA's convolution."""
    monkeypatch.setattr(conv, "POINTWISE_BWD_MIN_MAP_PIXELS", 1)
    monkeypatch.setattr(conv, "POINTWISE_BWD_MAX_IN_CHANNELS", 64)
    calls = {"jaxcls_pointwise_bwd": 1, "jaxcls_conv_wgrad": 0}
    jaxpr = _pointwise_conv_equals_xla(shape, out, 7, calls)
    # The only product giving an input-sized map is none: the forward GEMM gives the output's.
    dims = ",".join(map(str, shape))
    assert not re.search(rf"f32\[{dims}\] = dot_general", jaxpr)


def test_pointwise_gradients_are_native_by_channels_and_pixels():
    """conv.pointwise_bwd_fits: a 1x1 stride-1 unpadded kernel with at most 48 input channels on
    maps of at least POINTWISE_BWD_MIN_MAP_PIXELS output pixels; a float32 call follows it, other
    dtypes keep XLA's gradients."""
    fits = conv.pointwise_bwd_fits
    none = ((0, 0), (0, 0))
    assert fits((112, 112), (1, 1, 16, 96), 1, none)
    assert fits((8, 8), (1, 1, 48, 16), 1, none)
    assert not fits((28, 28), (1, 1, 49, 16), 1, none)  # more input channels
    assert not fits((7, 9), (1, 1, 16, 96), 1, none)  # a smaller map
    assert not fits((1, 1), (1, 1, 10, 240), 1, none)  # a squeeze-excite's
    assert not fits((28, 28), (1, 1, 16, 96), 2, none)
    assert not fits((28, 28), (1, 1, 16, 96), 1, ((1, 1), (1, 1)))
    assert not fits((28, 28), (3, 3, 16, 96), 1, none)

    def calls(dtype):
        x, w = jnp.ones((32, 8, 8, 16), dtype), jnp.ones((1, 1, 16, 32), dtype)
        grad = jax.jit(
            jax.grad(lambda x, w: jnp.sum(conv.conv2d(x, w).astype(jnp.float32)), (0, 1))
        )
        return grad.lower(x, w).compile().as_text().count("jaxcls_pointwise_bwd")

    assert (calls(jnp.float32) > 0, calls(jnp.bfloat16)) == (True, 0)


def test_pointwise_weight_gradient_is_native_by_channels_and_pixels():
    """conv.pointwise_wgrad_fits: a 1x1 stride-1 unpadded kernel with at least as many input as
    output channels, or POINTWISE_MIN_PIXELS output pixels in the call; and a call follows it
    (float32 only: other dtypes keep the einsum)."""
    fits = conv.pointwise_wgrad_fits
    none = ((0, 0), (0, 0))
    assert fits(32, (7, 7), (1, 1, 2048, 512), 1, none)  # reducing, any size
    assert fits(1, (1, 1), (1, 1, 64, 64), 1, none)
    assert fits(32, (28, 28), (1, 1, 128, 512), 1, none)  # expanding over 25088 pixels
    assert not fits(32, (14, 14), (1, 1, 80, 480), 1, none)  # expanding over 6272 pixels
    assert not fits(32, (28, 28), (1, 1, 512, 128), 2, none)  # stride 2: the native kernels
    assert not fits(32, (28, 28), (1, 1, 512, 128), 1, ((1, 1), (1, 1)))  # padded
    assert not fits(32, (28, 28), (3, 3, 512, 128), 1, none)

    def wgrad_calls(channels, dtype=jnp.float32):  # 7x7: too small for the both-gradients kernel
        x, w = jnp.ones((2, 7, 7, channels[0]), dtype), jnp.ones((1, 1, *channels), dtype)
        grad = jax.jit(jax.grad(lambda x, w: jnp.sum(conv.conv2d(x, w).astype(jnp.float32)), 1))
        return grad.lower(x, w).compile().as_text().count('custom_call_target="jaxcls_conv_wgrad"')

    assert (wgrad_calls((32, 16)), wgrad_calls((16, 32))) == (1, 0)
    assert wgrad_calls((32, 16), jnp.bfloat16) == 0


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_a_strided_1x1_conv_in_other_dtypes_keeps_the_taps_form(dtype):
    """'auto' gives a 1x1 stride-2 convolution the native kernels, which take float32 only; in
    other dtypes it keeps the tap-wise einsum that 1x1 kernels use otherwise, not XLA's
    convolution (whose weight gradient is the slow one), with the same values."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16), dtype)
    w = jax.random.normal(jax.random.key(1), (1, 1, 16, 32), dtype)

    def loss(x, w, impl):
        return jnp.sum(conv.conv2d(x, w, stride=2, impl=impl).astype(jnp.float32) ** 2)

    grads = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)
    assert "jaxcls_" not in grads.lower(x, w, "auto").compile().as_text()
    # The taps' weight gradient is a dot_general; XLA's own is a convolution.
    assert "dot_general" in grads.lower(x, w, "auto").as_text()
    assert "dot_general" not in grads.lower(x, w, "xla").as_text()
    for got, ref in zip(grads(x, w, "auto"), grads(x, w, "taps")):
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(ref, np.float32))


def test_a_models_train_step_runs_its_stem_natively_without_the_input_gradient():
    """The scratch CNN's stem (3 -> 16 channels) runs the native forward and weight gradient;
    the input gradient XLA's transposed convolution would give is dead code for the network
    input and compiled away. Its other convolutions (16 -> 32, 32 -> 64) run the dense kernels:
    forward, input gradient (the forward kernel) and weight gradient."""
    from jaxcls.benchmark import train_step

    params, rest, tx, make_steps, batch = train_step.train_setup("cnn_small", 8, 16)
    steps = make_steps()
    state = train_step.initial_state(steps, params, rest, tx)
    hlo = steps.train.lower(state, batch).compile().as_text()
    assert hlo.count('custom_call_target="jaxcls_stem_conv_fwd"') == 1
    assert hlo.count('custom_call_target="jaxcls_stem_conv_wgrad"') == 1
    assert hlo.count('custom_call_target="jaxcls_conv_fwd"') == 4
    assert hlo.count('custom_call_target="jaxcls_conv_wgrad"') == 2
    # No convolution produces a 3-channel (input-shaped) result: no input gradient.
    assert not any(
        " convolution(" in ln and "f32[8,16,16,3]" in ln.split("=")[1].split("convolution(")[0]
        for ln in hlo.splitlines()
    )


@pytest.mark.parametrize(
    "target,kernel_shape,stride,more,says",
    [
        ("jaxcls_conv_fwd", (3, 3, 5, 8), 1, {}, "jaxcls conv fwd: bad shapes"),  # 4 != 5 channels
        ("jaxcls_conv_fwd", (3, 3, 4, 8), 0, {}, "needs stride >= 1"),
        ("jaxcls_conv_fwd", (1, 1, 4, 8), 1, {"winograd": 1}, "needs a 3x3 kernel and stride 1"),
        ("jaxcls_conv_wgrad", (9, 9, 4, 8), 1, {}, "at most 64 kernel taps"),
        ("jaxcls_conv_wgrad", (3, 3, 4, 8), 2, {"winograd": 1}, "wgrad: winograd=1 needs a 3x3"),
    ],
)
def test_dense_conv_kernels_reject_bad_calls_with_a_clear_error(
    target, kernel_shape, stride, more, says
):
    x = jnp.ones((2, 5, 5, 4))
    image = jnp.ones((2, 5, 5, 8))
    fwd = target.endswith("fwd")
    args = (x, jnp.ones(kernel_shape)) if fwd else (x, image)
    out = jax.ShapeDtypeStruct(image.shape if fwd else kernel_shape, x.dtype)
    more = {"winograd": 0} | ({"few": 0} if fwd else {}) | more
    pads = ((1, 1), (1, 1)) if kernel_shape[0] == 3 else ((0, 0), (0, 0))
    with pytest.raises(Exception, match=says):
        conv.native_call("conv", target, out, *args, stride=stride, pads=pads, **more)


def test_the_weight_gradient_runs_as_winograds_only_from_32_input_channels():
    """conv.WINOGRAD_WGRAD_MIN_CHANNELS: a 3x3 stride-1 convolution with 16 input channels keeps
    Winograd's forward pass and input gradient (its transposed kernel has 32 input channels) but
    takes its weight gradient directly (Winograd's was 0.63-0.66x the direct kernel there); from
    32 input channels all three run as Winograd's. The gradients equal XLA's either way."""
    assert conv.WINOGRAD_WGRAD_MIN_CHANNELS == 32
    assert conv.winograd_fits(32, (16, 16), (3, 3, 16, 32), 1)
    assert not conv.winograd_fits(32, (16, 16), (3, 3, 16, 32), 1, weight_gradient=True)
    assert not conv.winograd_fits(32, (16, 16), (3, 3, 31, 32), 1, weight_gradient=True)
    assert conv.winograd_fits(32, (16, 16), (3, 3, 32, 16), 1, weight_gradient=True)
    assert not conv.winograd_fits(1, (16, 16), (3, 3, 32, 16), 1, weight_gradient=True)  # tiles
    pads = ((1, 1), (1, 1))

    def grads(impl, c, o):
        rng = np.random.default_rng(c)  # the same operands for both impls
        x = jnp.asarray(rng.standard_normal((8, 16, 16, c)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, c, o)) * 0.1, jnp.float32)
        g = jnp.asarray(rng.standard_normal((8, 16, 16, o)), jnp.float32)

        def loss(x, w):
            return jnp.sum(conv.conv2d(x, w, pads=pads, impl=impl) * g)

        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))  # the forward pass kept
        text = f.lower(x, w).compile().as_text()
        forms = {
            target: [("winograd = 1" in line) for line in text.splitlines() if target in line]
            for target in ('"jaxcls_conv_fwd"', '"jaxcls_conv_wgrad"')
        }
        return forms, f(x, w)

    for c, o, wgrad_winograd in ((16, 32, False), (32, 16, True)):
        forms, (v, (dx, dw)) = grads("native", c, o)
        # The forward pass and the input gradient (the forward kernel), then the weight gradient.
        assert forms == {'"jaxcls_conv_fwd"': [True, True], '"jaxcls_conv_wgrad"': [wgrad_winograd]}
        _, (v_xla, (dx_xla, dw_xla)) = grads("xla", c, o)
        np.testing.assert_allclose(v, v_xla, rtol=1e-5)
        for got, want in ((dx, dx_xla), (dw, dw_xla)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))


def test_the_forward_kernel_runs_the_few_pixels_form_up_to_native_few_pixels_per_call():
    """The caller picks the forward kernel's form: Winograd's where it fits, else the few-pixels
    form where the call (this device's images) has at most NATIVE_FEW_PIXELS output pixels, else
    the packed one; over 8 devices each call counts its own images' pixels."""
    w = jnp.ones((3, 3, 16, 24))
    pads = ((1, 1), (1, 1))

    def forms(fn, x):
        text = jax.jit(fn).lower(x, w).compile().as_text()
        return text.count("few = 1"), text.count("few = 0")

    def direct(x, w):
        return conv.dense_fwd_kernel(x, w, 1, pads, winograd=False)

    limit = conv.NATIVE_FEW_PIXELS
    assert forms(direct, jnp.ones((limit // 64, 8, 8, 16))) == (1, 0)  # 8 x 8 x 8 = the limit
    assert forms(direct, jnp.ones((limit // 64 + 1, 8, 8, 16))) == (0, 1)
    # 64 images of 5x5 (1,600 pixels), 8 a device (200 pixels, 72 tiles: not Winograd's).
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    x = jax.device_put(jnp.ones((64, 5, 5, 16)), NamedSharding(mesh, P("data")))
    assert forms(lambda x, w: conv._dense_fwd_parallel(x, w, 1, pads), x) == (1, 0)
    # Winograd's form is never the few-pixels one.
    winograd = forms(lambda x, w: conv.dense_fwd_kernel(x, w, 1, pads, winograd=True), x[:1])
    assert winograd == (0, 1)


def test_per_image_weight_gradients_are_added_up_as_a_dot_with_the_sums_result():
    """`conv.sum_over_images` (a product with a vector of ones, where XLA:CPU's reduction of the
    leading axis is slow past 16384 elements an image) gives ``jnp.sum(., 0)``; the depthwise
    backward adds its per-image kernel gradients that way, with the same kernel gradient."""
    per_image = jax.random.normal(jax.random.key(0), (8, 5, 5, 1, 700))  # 17500 an image
    np.testing.assert_allclose(
        conv.sum_over_images(per_image), jnp.sum(per_image, 0), rtol=1e-5, atol=1e-5
    )
    x = jax.random.normal(jax.random.key(1), (4, 7, 7, 700))
    k = jax.random.normal(jax.random.key(2), (5, 5, 1, 700))

    def kernel_grad(as_dot: bool):
        def loss(k):
            return jnp.sum(jnp.sin(depthwise.depthwise_conv(x, k, 1, "symmetric", "native")))

        with mock.patch.object(conv, "SUM_IMAGES_AS_DOT", as_dot):
            jaxpr = str(jax.make_jaxpr(jax.grad(loss))(k))
            return jaxpr, jax.grad(loss)(k)

    (jaxpr, dk), (jaxpr_ref, dk_ref) = kernel_grad(True), kernel_grad(False)
    assert "dot_general" in jaxpr and "dot_general" not in jaxpr_ref
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(dk_ref))))
