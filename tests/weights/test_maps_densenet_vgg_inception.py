"""DenseNet, VGG and Inception-v3 maps: the spellings real files use, and what is refused.

The parity cases of test_parity.py prove each map on the names today's timm/torchvision/Keras
write; here the same fixtures are renamed to the older spellings of the published files (and the
conversions must give the same logits), and wrong pairings must fail with a WeightsError.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from jaxcls.weights import convert, registry
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.maps import inception as inception_maps
from tests.weights.test_parity import (
    CASES,
    TOLERANCE,
    abstract_model,
    case_weights,
    max_logit_error,
)


def _assert_parity(case, weights):
    err, scale, report = max_logit_error(case, weights)
    assert err <= TOLERANCE * scale, f"max|dlogits| {err:.3g} vs max|ref| {scale:.3g}"
    return report


def test_torchvision_densenet_files_before_0_3_spell_norm_dot_1():
    """densenet121-a639ec97.pth names ``denselayer1.norm.1.weight``: same logits."""
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
        for k, v in case_weights("torchvision_densenet121").items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    _assert_parity("torchvision_densenet121", old)


def test_both_spellings_at_once_are_refused():
    weights = case_weights("torchvision_densenet121")
    w = weights["features.denseblock1.denselayer1.norm1.weight"]
    weights["features.denseblock1.denselayer1.norm.1.weight"] = w
    with pytest.raises(WeightsError, match="would both be"):
        max_logit_error("torchvision_densenet121", weights)


def test_keras_applications_densenet_names():
    """The published DenseNet .h5 files (keras-applications 1.0) say conv1/conv, conv1/bn, fc1000."""
    old_names = {"conv1_conv": "conv1/conv", "conv1_bn": "conv1/bn", "predictions": "fc1000"}
    old = {}
    for k, v in case_weights("keras_densenet121").items():
        layer, _, var = k.rpartition("/")
        old[f"{old_names.get(layer, layer)}/{var}"] = v
    assert "conv1/conv/kernel" in old and "fc1000/kernel" in old
    _assert_parity("keras_densenet121", old)


def test_keras_inception_numbered_from_one():
    """Keras 2.0 wrote InceptionV3 with conv2d_1..conv2d_94 (creation order, from 1): same logits."""

    def shift(name):
        layer, _, var = name.partition("/")
        m = re.fullmatch(r"(conv2d|batch_normalization)(?:_(\d+))?", layer)
        return f"{m.group(1)}_{int(m.group(2) or 0) + 1}/{var}" if m else name

    old = {shift(k): v for k, v in case_weights("keras_inception_v3").items()}
    assert "conv2d_94/kernel" in old and "conv2d/kernel" not in old
    _assert_parity("keras_inception_v3", old)


def test_keras_inception_renumbering_keeps_creation_order():
    names = [f"conv2d_{k}/kernel" for k in (12, 3, 100)] + ["batch_normalization_7/beta", "x/y"]
    assert inception_maps.rename_keras(names) == {
        "conv2d_3/kernel": "conv2d/kernel",
        "conv2d_12/kernel": "conv2d_1/kernel",
        "conv2d_100/kernel": "conv2d_2/kernel",
        "batch_normalization_7/beta": "batch_normalization/beta",
    }


def test_torchvision_inception_aux_logits():
    """AuxLogits tensors are deliberately unused without an aux head, and loaded into one."""
    weights = case_weights("torchvision_inception_v3")
    aux = {n for n in weights if n.startswith("AuxLogits.")}
    report = convert.load_weights_into(
        abstract_model("inception_v3"), "inception_v3", "torchvision", weights
    )
    assert set(report.ignored) - {n for n in weights if n.endswith("num_batches_tracked")} == aux
    model = abstract_model("inception_v3", aux_logits=True)
    report = convert.load_weights_into(model, "inception_v3", "torchvision", weights)
    assert not aux & set(report.ignored)
    np.testing.assert_array_equal(
        np.asarray(model.AuxLogits.fc.kernel[...]), weights["AuxLogits.fc.weight"].T
    )


@pytest.mark.parametrize(
    "case, model_name, kwargs, match",
    [
        ("keras_inception_v3", "InceptionV3", {"aux_logits": True}, "no auxiliary classifier"),
        ("keras_inception_v3", "inception_v3", {}, "no gamma"),  # Keras BN: scale=False.
        ("timm_inception_v3", "inception_v3", {"aux_logits": True}, "AuxLogits"),  # timm: none.
        ("keras_vgg16", "vgg16_bn", {}, "no BatchNorm"),
    ],
)
def test_wrong_pairings_are_refused(case, model_name, kwargs, match):
    spec = CASES[case]
    model = abstract_model(model_name, **{**spec["kwargs"], **kwargs})
    with pytest.raises(WeightsError, match=match):
        convert.load_weights_into(model, model_name, spec["source"], case_weights(case))


def test_torchvision_inception_contract_is_minus_one_to_one():
    """torchvision's pretrained Inception3 sets transform_input=True, re-normalising its
    ImageNet-normalised input to [-1, 1]: our model (no transform) must be fed [-1, 1]."""
    p = registry.get("torchvision:inception_v3").preprocessing
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.5, 0.5, 0.5)
    assert p.input_size == 299 and p.resize_size == 342
