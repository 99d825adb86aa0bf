"""The dense-conv implementation switch: 'taps' (custom-VJP weight gradient) and 'patches' (one
GEMM over gathered patches, for tiny output maps) equal 'xla'."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.models import conv, layers


def _grads(impl, x, w, stride, pads, ct):
    def loss(x, w):
        return jnp.sum(conv.conv2d(x, w, stride=stride, pads=pads, impl=impl) * ct)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, w)


@pytest.mark.parametrize(
    "kernel,stride,padding,size",
    [
        ((1, 1), 1, "symmetric", 8),
        ((1, 1), 2, "symmetric", 9),  # strided projection shortcut
        ((3, 3), 1, "symmetric", 8),
        ((3, 3), 2, "same_tf", 8),  # asymmetric TF padding
        ((3, 3), 2, "symmetric", 9),
        ((7, 7), 2, "symmetric", 11),  # ImageNet stem
        ((1, 7), 1, "valid", 9),  # Inception's factorised kernels, no padding
        ((5, 5), 1, "same_tf", 7),
        ((3, 3), 1, "symmetric", 2),  # ResNet's last stage at 64 px: a 2x2 map (the CPU cliff)
        ((3, 3), 1, "same_tf", 1),  # a 1x1 map
        ((3, 3), 2, "symmetric", 3),  # a stride-2 transition down to a 2x2 map
    ],
)
@pytest.mark.parametrize("impl", ["taps", "patches"])
def test_taps_and_patches_match_xla_outputs_and_gradients(kernel, stride, padding, size, impl):
    kx, kw_, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, size, size + 1, 5))
    w = jax.random.normal(kw_, (*kernel, 5, 6))
    pads = [layers.get_padding(padding, x.shape[1 + i], kernel[i], stride) for i in range(2)]
    out = jax.eval_shape(lambda x, w: conv.conv2d(x, w, stride=stride, pads=pads), x, w)
    ct = jax.random.normal(kc, out.shape)

    @jax.jit  # one compilation per case: both impls' outputs and gradients
    def both(x, w):
        def run(impl):
            def loss(x, w):
                y = conv.conv2d(x, w, stride=stride, pads=pads, impl=impl)
                return jnp.sum(y * ct), y

            (value, y), g = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, w)
            return y, value, g

        return run("xla"), run(impl)

    (y_x, l_x, (gx_x, gw_x)), (y_t, l_t, (gx_t, gw_t)) = both(x, w)
    np.testing.assert_allclose(y_t, y_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l_t, l_x, rtol=1e-5)
    np.testing.assert_allclose(gx_t, gx_x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw_t, gw_x, rtol=1e-4, atol=1e-4)
    # and both equal the definition: dW[i, j] = sum over outputs of x_pad * g
    xp = np.pad(np.asarray(x), ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = ct.shape[1:3]
    i, j = kernel[0] - 1, kernel[1] - 1
    tap = xp[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride]
    np.testing.assert_allclose(
        gw_t[i, j], np.einsum("bhwc,bhwo->co", tap, np.asarray(ct)), rtol=1e-4, atol=1e-4
    )


def test_auto_gathers_patches_only_for_tiny_output_maps_on_cpu():
    on_cpu = jax.default_backend() == "cpu"
    assert conv.resolve_conv_impl("auto", (3, 3), (2, 2)) == ("patches" if on_cpu else "xla")
    assert conv.resolve_conv_impl("auto", (3, 3), (1, 1)) == ("patches" if on_cpu else "xla")
    assert conv.resolve_conv_impl("auto", (3, 3), (3, 3)) == "xla"
    assert conv.resolve_conv_impl("auto", (3, 3), (0, 2)) == "xla"  # empty: XLA's own
    assert conv.resolve_conv_impl("auto", (1, 1), (2, 2)) == ("taps" if on_cpu else "xla")
    assert conv.output_hw((9, 8), (3, 3), 2, ((1, 1), (0, 1))) == (5, 4)


def patches_contraction(x, w, pads) -> int:
    """The contraction size of the one GEMM that ``impl='patches'`` traces for ``x * w``."""
    jaxpr = jax.make_jaxpr(lambda x, w: conv.conv2d(x, w, pads=pads, impl="patches"))(x, w)
    (dot,) = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    (contracting, _), _ = dot.params["dimension_numbers"]
    return int(np.prod([dot.invars[0].aval.shape[d] for d in contracting]))


def test_patches_leave_out_taps_that_see_only_padding():
    # A 3x3 'SAME' conv on a 1x1 map: only the centre tap meets a pixel; a stride-2 step from a
    # 2x2 map down to 1x1 (pads 1/1): the taps of rows and columns 1-2; a 2x2 map: all nine.
    assert conv.live_taps((1, 1), (3, 3), 1, ((1, 1), (1, 1))) == [(1, 1)]
    assert conv.live_taps((2, 2), (3, 3), 2, ((1, 1), (1, 1))) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert conv.live_taps((2, 2), (3, 3), 1, ((1, 1), (1, 1))) == [
        (i, j) for i in range(3) for j in range(3)
    ]
    assert conv.live_taps((1, 4), (3, 3), 1, ((1, 1), (1, 1))) == [(1, 0), (1, 1), (1, 2)]
    # So the 1x1-map GEMM contracts over the 16 input channels, not 9 x 16, and the dead taps'
    # weight gradient is exactly zero, as XLA's convolution gives it.
    x = jax.random.normal(jax.random.key(0), (4, 1, 1, 16))
    w = jax.random.normal(jax.random.key(1), (3, 3, 16, 8))
    pads = ((1, 1), (1, 1))
    assert patches_contraction(x, w, pads) == 16
    ct = jnp.ones((4, 1, 1, 8))
    _, (gx, gw) = _grads("patches", x, w, 1, pads, ct)
    _, (gx_xla, gw_xla) = _grads("xla", x, w, 1, pads, ct)
    dead = np.ones((3, 3), bool)
    dead[1, 1] = False
    assert np.all(np.asarray(gw)[dead] == 0)
    np.testing.assert_allclose(gw, gw_xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_xla, rtol=1e-5, atol=1e-5)


def test_taps_bf16_gradients_close_to_float32():
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 16))
    w = jax.random.normal(jax.random.key(2), (1, 1, 16, 8))
    pads = ((0, 0), (0, 0))
    ct = jnp.ones((4, 8, 8, 8))
    _, (_, gw32) = _grads("xla", x, w, 1, pads, ct)
    _, (_, gw16) = _grads("taps", x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), 1, pads, ct)
    assert gw16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(gw16, np.float32), gw32, rtol=2e-2, atol=0.5)


def test_auto_picks_taps_for_pointwise_on_cpu_and_override_restores():
    on_cpu = jax.default_backend() == "cpu"
    assert conv.resolve_conv_impl("auto", (1, 1)) == ("taps" if on_cpu else "xla")
    assert conv.resolve_conv_impl("auto", (3, 3)) == "xla"
    with layers.set_conv_impl("taps"):
        assert conv.resolve_conv_impl("auto", (3, 3)) == "taps"
        assert conv.resolve_conv_impl("xla", (1, 1)) == "xla"  # explicit wins
        with conv.set_conv_impl("xla"):
            assert conv.resolve_conv_impl("auto", (1, 1)) == "xla"
        assert conv.resolve_conv_impl("auto", (1, 1)) == "taps"
    assert conv.resolve_conv_impl("auto", (1, 1)) == ("taps" if on_cpu else "xla")
    with pytest.raises(ValueError, match="conv impl"):
        conv.set_conv_impl("im2col")
    with pytest.raises(ValueError, match="conv impl"):
        layers.Conv2d(3, 4, 1, impl="fast", rngs=nnx.Rngs(0))


def test_model_gradients_do_not_depend_on_the_conv_impl():
    model = models.create(
        "resnet50",
        num_classes=3,
        rngs=nnx.Rngs(0),
        depths=(1, 1),
        widths=(8, 16),
        stem_width=8,
        zero_init_last=False,
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))

    def grads():
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            return jnp.sum(m(x, train=True)[0] ** 2)

        return jax.jit(jax.grad(loss))(params)

    with conv.set_conv_impl("xla"):
        g_xla = grads()
    with conv.set_conv_impl("taps"):
        g_taps = grads()
    for a, b in zip(jax.tree.leaves(g_xla), jax.tree.leaves(g_taps)):
        np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-4)


def _ynn_fusions(text: str) -> tuple[int, int]:
    """(YNNPACK fusions, those that run a convolution) in a compiled program's text."""
    bodies, name = {}, None
    for line in text.splitlines():
        if line.endswith("{") and "(" in line and "=" not in line.split("(")[0]:
            name = line.split()[0].lstrip("%") if not line.startswith("ENTRY") else "ENTRY"
            bodies[name] = []
        elif name is not None:
            bodies[name].append(line)
    fusions = [
        line.split("calls=%")[1].split(",")[0].split()[0]
        for lines in bodies.values()
        for line in lines
        if " = " in line and "ynn_fusion" in line.split(" = ")[0] and "calls=%" in line
    ]
    with_conv = sum(any("convolution(" in ln for ln in bodies.get(f, [])) for f in fusions)
    return len(fusions), with_conv


def _compiled_text(fn, *args, **jit_kwargs) -> str:
    return jax.jit(fn, **jit_kwargs).lower(*args).compile().as_text()


def test_cpu_dense_convolutions_leave_ynnpack_with_the_same_results():
    # One dense 3x3 convolution (forward and both gradients) beside a matmul: with the 'eigen'
    # library the convolutions compile to XLA's own kernels and only the matmul goes to YNNPACK.
    x = jax.random.normal(jax.random.key(0), (8, 28, 28, 64))
    w = jax.random.normal(jax.random.key(1), (3, 3, 64, 64)) * 0.05
    a = jax.random.normal(jax.random.key(2), (128, 128))

    def f(x, w, a):
        y, grads = jax.value_and_grad(
            lambda x, w: jnp.sum(conv.conv2d(x, w, pads=((1, 1), (1, 1)), impl="xla") ** 2),
            argnums=(0, 1),
        )(x, w)
        return y, grads, a @ a

    eigen = conv.compiler_options("cpu")
    assert eigen is not None and conv.compiler_options("gpu") is None
    with conv.set_cpu_conv_library("ynnpack"):
        assert conv.compiler_options("cpu") is None
    total, with_conv = _ynn_fusions(_compiled_text(f, x, w, a))
    assert with_conv >= 1 and total > with_conv  # XLA's default: convolutions and the matmul
    total, with_conv = _ynn_fusions(_compiled_text(f, x, w, a, compiler_options=eigen))
    assert with_conv == 0 and total >= 1  # the matmul (and reductions) only
    ours = jax.jit(f, compiler_options=eigen)(x, w, a)
    default = jax.jit(f)(x, w, a)
    for p, q in zip(jax.tree.leaves(ours), jax.tree.leaves(default)):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(q))))


def test_the_trainers_steps_compile_with_the_cpu_convolution_options():
    from jaxcls.benchmark import train_step

    def ynn_fusions_of_train_step():
        params, rest, tx, make_steps, batch = train_step.train_setup("resnet18", 8, 64)
        steps = make_steps()
        state = train_step.initial_state(steps, params, rest, tx)
        return _ynn_fusions(steps.train.lower(state, batch).compile().as_text())

    with conv.set_cpu_conv_library("ynnpack"):
        assert ynn_fusions_of_train_step()[1] > 0
    total, with_conv = ynn_fusions_of_train_step()
    assert with_conv == 0 and total > 0
