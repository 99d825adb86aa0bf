"""Inception's pool branch convolves before its 3x3 average pool: the same function, the pool over
the convolution's few output channels instead of its many input channels."""

import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls.models import inception, layers


def _block(count_include_pad: bool):
    cfg = dict(dtype=jnp.float32, eps=1e-3, bn_scale=True, count_include_pad=count_include_pad)
    block = inception.InceptionA(24, 8, cfg=cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(block, nnx.Param, ...)
    leaves, tree = jax.tree.flatten(params)
    noise = [0.1 * jax.random.normal(jax.random.key(i), a.shape) for i, a in enumerate(leaves)]
    params = jax.tree.unflatten(tree, [a + n for a, n in zip(leaves, noise, strict=True)])
    return nnx.merge(graphdef, params, rest)  # BatchNorm biases not all zero


def _value_and_grads(block, x, *, after: bool, train: bool):
    graphdef, params, rest = nnx.split(block, nnx.Param, ...)

    def loss(params, x):
        y = nnx.merge(graphdef, params, rest, copy=True)(x, train=train)
        return jnp.sum(y * jnp.cos(y)), y  # a cotangent that differs per element

    with mock.patch.object(layers, "POOL_CONV_CHEAPER_ORDER", after):
        (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return y, grads


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("count_include_pad", [True, False])  # timm/torchvision, Keras
def test_the_pool_branch_convolves_first_with_the_same_output_and_gradients(
    train, count_include_pad
):
    block = _block(count_include_pad)
    x = jax.random.normal(jax.random.key(9), (2, 7, 9, 24))
    y_new, (gp_new, gx_new) = _value_and_grads(block, x, after=True, train=train)
    y_old, (gp_old, gx_old) = _value_and_grads(block, x, after=False, train=train)
    np.testing.assert_allclose(y_new, y_old, rtol=1e-5, atol=1e-5 * np.abs(y_old).max())
    np.testing.assert_allclose(gx_new, gx_old, rtol=1e-5, atol=1e-5 * np.abs(gx_old).max())
    for new, old in zip(jax.tree.leaves(gp_new), jax.tree.leaves(gp_old), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5 * np.abs(old).max())


def test_the_pool_branch_pools_the_convolutions_output_channels():
    block = _block(True)
    x = jnp.ones((1, 5, 5, 24))

    def pooled_widths(after: bool | None = None):  # the channel counts of the 3x3 pools' outputs
        setting = layers.POOL_CONV_CHEAPER_ORDER if after is None else after
        with mock.patch.object(layers, "POOL_CONV_CHEAPER_ORDER", setting):
            jaxpr = jax.make_jaxpr(lambda x: block(x, train=False))(x)
        return [
            e.outvars[0].aval.shape[-1]
            for e in jaxpr.eqns
            if e.primitive.name == "reduce_window_sum"
        ]

    assert pooled_widths() == [8]  # by default
    assert pooled_widths(True) == [8] and pooled_widths(False) == [24]


def test_the_reordering_refuses_a_convolution_it_does_not_commute_with():
    for kwargs in (dict(use_bias=True), dict(kernel_size=3), dict(stride=2)):
        conv = layers.Conv2d(4, 2, **{"kernel_size": 1, **kwargs}, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match="1x1 stride-1 convolution without bias"):
            layers.avg_pool_pointwise(jnp.ones((1, 6, 6, 4)), conv, 2, 2, conv_first=True)


@pytest.mark.parametrize("train", [True, False])
def test_padding_inside_the_convolution_gives_the_same_block_without_a_pad(train):
    """The A block's padded units (3x3 pad 1: the native kernel; 5x5 pad 2: XLA's convolution)
    pad inside their convolution: the output and every gradient as with a jnp.pad before it,
    to float rounding, and no pad (nor its gradient's slice) in the program."""
    block, x = _block(True), jax.random.normal(jax.random.key(9), (2, 9, 9, 24))

    def run(pad_in_conv):
        graphdef, params, rest = nnx.split(block, nnx.Param, ...)

        def loss(params, x):
            y = nnx.merge(graphdef, params, rest, copy=True)(x, train=train)
            return jnp.sum(y * jnp.cos(y)), y

        grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        with mock.patch.object(inception, "PAD_IN_CONV", pad_in_conv):
            jaxpr = str(jax.make_jaxpr(grad)(params, x))
            return jax.jit(grad)(params, x), jaxpr

    ((_, y_new), g_new), jaxpr_new = run(True)
    ((_, y_old), g_old), jaxpr_old = run(False)
    # The padded units' spatial pads are gone (the 5x5 and both 3x3; the average pool keeps its).
    spatial = re.compile(
        r"padding_config=\(\(np\.int64\(0\), np\.int64\(0\), 0\), \(np\.int64\([1-9]"
    )
    assert len(spatial.findall(jaxpr_old)) - len(spatial.findall(jaxpr_new)) >= 3
    np.testing.assert_allclose(y_new, y_old, rtol=1e-5, atol=1e-5 * np.abs(y_old).max())
    for new, old in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5 * np.abs(old).max())
