"""Layout rules for VGG's classifier (flattened 7x7 map -> conv) and Keras caffe-mode first convs.

Each rule is checked against the source framework's operator computed independently in numpy:
torchvision flattens NCHW (``torch.flatten(x, 1)``) and Keras flattens NHWC (``Flatten``) before
the Linear/Dense; our model applies a 7x7 'valid' conv to the NHWC map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcls.weights import layout
from jaxcls.weights.errors import WeightsError

RNG = np.random.default_rng(0)


def _conv(x_nhwc, kernel_hwio):
    return np.asarray(
        jax.lax.conv_general_dilated(
            jnp.asarray(x_nhwc),
            jnp.asarray(kernel_hwio),
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision="highest",
        )
    )


def test_torch_flattened_linear_equals_7x7_conv():
    x = RNG.standard_normal((2, 7, 7, 5)).astype(np.float32)  # NHWC
    w = RNG.standard_normal((6, 5 * 7 * 7)).astype(np.float32)  # Linear(C*7*7 -> 6)
    torch_out = x.transpose(0, 3, 1, 2).reshape(2, -1) @ w.T  # flatten(NCHW) -> Linear
    ours = _conv(x, layout.apply_rule("torch_flat_linear_to_conv", w))
    assert ours.shape == (2, 1, 1, 6)
    np.testing.assert_allclose(ours[:, 0, 0], torch_out, rtol=1e-5, atol=1e-4)
    # An NHWC reading of the same weight would be wrong: the rule's order matters.
    assert not np.allclose(_conv(x, w.T.reshape(7, 7, 5, 6))[:, 0, 0], torch_out, atol=1e-2)


def test_keras_flattened_dense_equals_7x7_conv():
    x = RNG.standard_normal((2, 7, 7, 5)).astype(np.float32)
    w = RNG.standard_normal((7 * 7 * 5, 6)).astype(np.float32)  # Dense(7*7*C -> 6)
    keras_out = x.reshape(2, -1) @ w  # Flatten (NHWC) -> Dense
    ours = _conv(x, layout.apply_rule("keras_flat_dense_to_conv", w))
    np.testing.assert_allclose(ours[:, 0, 0], keras_out, rtol=1e-5, atol=1e-4)


def test_linear_and_dense_as_1x1_convs():
    x = RNG.standard_normal((2, 1, 1, 5)).astype(np.float32)
    w = RNG.standard_normal((6, 5)).astype(np.float32)  # torch (out, in)
    np.testing.assert_allclose(
        _conv(x, layout.apply_rule("torch_linear_to_conv1x1", w))[:, 0, 0], x[:, 0, 0] @ w.T,
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    np.testing.assert_allclose(
        _conv(x, layout.apply_rule("keras_dense_to_conv1x1", w.T))[:, 0, 0], x[:, 0, 0] @ w.T,
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_flattened_rules_refuse_other_inputs():
    with pytest.raises(WeightsError, match="not a flattened 7x7 map"):
        layout.apply_rule("torch_flat_linear_to_conv", np.zeros((6, 50), np.float32))
    with pytest.raises(WeightsError, match="2-D"):
        layout.apply_rule("keras_flat_dense_to_conv", np.zeros((7, 7, 1, 6), np.float32))
