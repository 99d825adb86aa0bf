"""Max pooling's 'taps' gradient (models/pool.py) equals XLA's select-and-scatter, ties included."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcls.models import layers, pool


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
