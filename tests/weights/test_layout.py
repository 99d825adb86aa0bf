"""Layout rules reproduce the source framework's operator; strict assignment names every mismatch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcls.weights import layout, maps
from jaxcls.weights.errors import WeightsError

RNG = np.random.default_rng(0)


def _conv_nchw(x, w, groups=1):
    """Reference cross-correlation in PyTorch's layout (NCHW input, OIHW kernel, no padding)."""
    n, c, h, wd = x.shape
    o, i, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1), np.float64)
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for dy in range(kh):
            for dx in range(kw):
                patch = x[:, g * i : (g + 1) * i, dy : dy + out.shape[2], dx : dx + out.shape[3]]
                out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, dy, dx])
    return out


def _flax_conv(x_nhwc, kernel_hwio, groups=1):
    return jax.lax.conv_general_dilated(
        jnp.asarray(x_nhwc),
        jnp.asarray(kernel_hwio),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision="highest",
    )


def test_torch_conv_matches_pytorch_semantics():
    x = RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = RNG.standard_normal((5, 3, 3, 2)).astype(np.float32)  # Non-square: catches kh/kw swaps.
    want = _conv_nchw(x, w).transpose(0, 2, 3, 1)
    got = _flax_conv(x.transpose(0, 2, 3, 1), layout.torch_conv(w))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torch_depthwise_matches_grouped_conv():
    x = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
    w = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32)
    k = layout.torch_depthwise(w)
    assert k.shape == (3, 3, 1, 4)
    want = _conv_nchw(x, w, groups=4).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(
        _flax_conv(x.transpose(0, 2, 3, 1), k, groups=4), want, rtol=1e-5, atol=1e-5
    )
    with pytest.raises(WeightsError, match=r"\(C, 1, kh, kw\)"):
        layout.torch_depthwise(np.zeros((4, 2, 3, 3)))


def test_linear_rules():
    x = RNG.standard_normal((3, 6)).astype(np.float32)
    w = RNG.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(x @ layout.torch_linear(w), x @ w.T, rtol=1e-6)
    np.testing.assert_allclose(
        x @ layout.torch_conv1x1_to_linear(w[:, :, None, None]), x @ w.T, rtol=1e-6
    )
    np.testing.assert_array_equal(layout.keras_conv1x1_to_linear(w.T[None, None]), w.T)
    with pytest.raises(WeightsError, match="2-D"):
        layout.torch_linear(np.zeros((2, 2, 1, 1)))


def test_keras_depthwise_with_multiplier():
    """Keras output channel c*M + m convolves input channel c with kernel[:, :, c, m]."""
    c, m = 3, 2
    x = RNG.standard_normal((1, 5, 5, c)).astype(np.float32)
    w = RNG.standard_normal((3, 3, c, m)).astype(np.float32)
    got = np.asarray(_flax_conv(x, layout.keras_depthwise(w), groups=c))
    for ci in range(c):
        for mi in range(m):
            ref = _conv_nchw(x[..., ci][:, None].transpose(0, 1, 2, 3), w[:, :, ci, mi][None, None])
            np.testing.assert_allclose(got[..., ci * m + mi], ref[:, 0], rtol=1e-5, atol=1e-5)


def test_tf_same_padding_and_conventions():
    assert layout.tf_same_padding(224, 3, 2) == (0, 1)  # Even total: the extra pixel goes after.
    assert layout.tf_same_padding(112, 5, 2) == (1, 2)
    assert layout.tf_same_padding(7, 3, 1) == (1, 1)
    assert layout.tf_same_padding(225, 3, 2) == (1, 1)
    assert layout.torch_padding(3) == 1 and layout.torch_padding(5) == 2
    assert layout.torch_padding(3, dilation=2) == 2
    assert layout.flax_bn_momentum(0.1) == pytest.approx(0.9)
    assert layout.flax_bn_momentum(0.01) == pytest.approx(0.99)


def test_unknown_rule():
    with pytest.raises(WeightsError, match="unknown layout rule 'transpose'"):
        layout.apply_rule("transpose", np.zeros(2))


# -------------------------------------------------------------------------------- strict_assign
def _target():
    return {
        ("stem", "conv", "kernel"): (3, 3, 3, 8),
        ("stem", "bn", "scale"): (8,),
        ("stem", "bn", "mean"): jax.ShapeDtypeStruct((8,), jnp.float32),
        ("head", "kernel"): (8, 10),
    }


def _source():
    return {
        "conv1.weight": RNG.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "bn1.weight": np.ones(8, np.float32),
        "bn1.running_mean": np.arange(8, dtype=np.float64),
        "bn1.num_batches_tracked": np.array(5),
        "fc.weight": RNG.standard_normal((10, 8)).astype(np.float32),
    }


def _map():
    return {
        ("stem", "conv", "kernel"): ("conv1.weight", "torch_conv"),
        ("stem", "bn", "scale"): ("bn1.weight", "identity"),
        ("stem", "bn", "mean"): ("bn1.running_mean", "identity"),
        ("head", "kernel"): ("fc.weight", "torch_linear"),
    }


def test_strict_assign_success():
    src = _source()
    out = layout.strict_assign(_target(), src, _map())
    assert set(out) == set(_target())
    np.testing.assert_array_equal(out[("head", "kernel")], src["fc.weight"].T)
    assert out[("stem", "bn", "mean")].dtype == np.float32  # Cast to the target's dtype.
    # String paths work the same as tuples.
    str_map = {layout.path_str(k): v for k, v in _map().items()}
    assert set(layout.strict_assign(_target(), src, str_map)) == set(_target())


def test_strict_assign_lists_both_sides_and_shape_mismatches():
    src = _source()
    src["extra.weight"] = np.zeros(3, np.float32)
    src["fc.weight"] = np.zeros((11, 8), np.float32)
    name_map = _map()
    del name_map[("stem", "bn", "scale")]
    name_map[("ghost", "kernel")] = ("conv1.weight", "torch_conv")
    with pytest.raises(WeightsError) as e:
        layout.strict_assign(_target(), src, name_map)
    msg = str(e.value)
    assert "model parameters with no source tensor (1):\n    stem.bn.scale" in msg
    assert "source tensors left unused (2):\n    bn1.weight\n    extra.weight" in msg
    assert "parameters the model lacks (1):\n    ghost.kernel" in msg
    assert "head.kernel (8, 10) <- fc.weight (11, 8) via torch_linear" in msg
    assert "num_batches_tracked" not in msg


def test_strict_assign_ignore_patterns_and_rule_errors():
    src = _source()
    src["normalization.mean"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError, match="normalization.mean"):
        layout.strict_assign(_target(), src, _map())
    assert layout.strict_assign(_target(), src, _map(), ignore=["normalization.*"])
    bad = _map()
    bad[("head", "kernel")] = ("fc.weight", "torch_conv")
    with pytest.raises(WeightsError, match=r"head.kernel <- fc.weight: rule 'torch_conv'"):
        layout.strict_assign(_target(), _source(), bad)


def test_keras3_var_names_patterns():
    w = {
        "bn/0": np.ones(4),
        "bn/1": np.zeros(4),
        "bn/2": np.zeros(4),
        "bn/3": np.ones(4),
        "dense/1": np.zeros(5),
        "dense/0": np.ones((4, 5)),
        "conv/0": np.ones((1, 1, 4, 4)),
        "normalization/0": np.zeros((1, 1, 1, 3)),
        "normalization/1": np.ones((1, 1, 1, 3)),
        "normalization/2": np.array(0),
    }
    named = layout.keras3_var_names(w)
    assert set(named) == {
        "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance", "dense/kernel",
        "dense/bias", "conv/kernel", "normalization/mean", "normalization/variance",
        "normalization/count",
    }  # fmt: skip
    assert named["dense/kernel"].shape == (4, 5)
    with pytest.raises(WeightsError, match="layer odd has unrecognised variables"):
        layout.keras3_var_names({"odd/0": np.ones(3), "odd/1": np.ones(3)})


def test_keras_names_one_naming_for_every_keras_file():
    """TF-era ``depthwise_kernel`` and Keras 3's index-only names both become ``layer/kernel``,
    a layer with both kernels is refused rather than guessed, an old download's renamed layer
    takes today's name (per family, through the map's rename hook)."""
    dw = np.ones((3, 3, 8, 1), np.float32)
    legacy = {"block1a_dwconv/depthwise_kernel": dw, "stem_conv/kernel": np.ones((3, 3, 3, 8))}
    assert set(layout.keras_names(legacy)) == {"block1a_dwconv/kernel", "stem_conv/kernel"}
    keras3 = {"block1a_dwconv/0": dw, "stem_bn/0": np.ones(8), "stem_bn/1": np.zeros(8),
              "stem_bn/2": np.zeros(8), "stem_bn/3": np.ones(8)}  # fmt: skip
    named = layout.keras_names(keras3)
    assert set(named) == {"block1a_dwconv/kernel", "stem_bn/gamma", "stem_bn/beta",
                          "stem_bn/moving_mean", "stem_bn/moving_variance"}  # fmt: skip
    assert named["block1a_dwconv/kernel"] is dw
    with pytest.raises(WeightsError, match="both a kernel and a depthwise_kernel"):
        layout.keras_names({"dw/depthwise_kernel": dw, "dw/kernel": dw})
    # keras-applications 1.0's MobileNetV2 downloads call the classifier 'Logits'.
    fc = {"Logits/kernel": np.ones((8, 10)), "Logits/bias": np.ones(10)}
    renamed = maps.canonical_names("keras", "MobileNetV2", fc)
    assert set(renamed) == {"predictions/kernel", "predictions/bias"}
    both = {**fc, "predictions/kernel": np.ones((8, 10))}
    assert set(maps.canonical_names("keras", "MobileNetV2", both)) == set(both)  # Not onto one.
