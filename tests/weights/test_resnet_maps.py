"""ResNet / ResNetV2 name maps: the BGR fold of Keras caffe-mode weights and clear refusals.

The logits themselves are checked in test_parity.py (timm, torchvision and Keras fixtures).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.weights import convert, layout, maps, registry
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.readers import read_weights
from tests.weights.test_parity import CASES, FIXTURES, abstract_model


def _create(case: str, model_name: str | None = None, **kwargs):
    """The case's model, abstract (a strict load fills every leaf)."""
    return abstract_model(model_name or CASES[case]["model"], **{**CASES[case]["kwargs"], **kwargs})


def _input_conv_rules(model_name: str, source: str) -> set[str]:
    """The layout rules of the convs that see the image (3 input channels)."""
    abstract = nnx.eval_shape(lambda: models.create(model_name, num_classes=10, rngs=nnx.Rngs(0)))
    target = convert.model_targets(abstract)
    try:
        name_map, _ = maps.build(source, model_name, target)
    except WeightsError as e:
        pytest.skip(str(e))  # No map for this family yet (it must flip once it has one).
    return {name_map[p][1] for p, t in target.items() if len(t.shape) == 4 and t.shape[2] == 3}


BGR_OR_RESNET = [
    t
    for t in registry.list_tags()
    if registry.get(t).preprocessing.channel_order == "BGR"
    or (t.startswith("keras:") and "resnet" in t.lower())
]


@pytest.mark.parametrize("tag", BGR_OR_RESNET)
def test_converted_models_take_rgb(tag):
    """A BGR origin (Keras caffe mode) gets its first conv flipped, an RGB one does not: the
    converted model always takes the RGB images the registry contract's pipeline produces."""
    t = registry.get(tag)
    want = "keras_conv_bgr_to_rgb" if t.preprocessing.channel_order == "BGR" else "keras_conv"
    assert _input_conv_rules(t.model, t.source) == {want}


def test_bgr_flip_is_exact_and_needed():
    """conv(rgb) with the flipped kernel equals conv(bgr) with Keras' kernel, and the fixture's
    logits miss the criterion by far when the image reaches the model in BGR order."""
    w = np.random.default_rng(0).normal(size=(3, 3, 3, 4))
    x = np.random.default_rng(1).normal(size=(5, 5, 3))
    flipped = layout.apply_rule("keras_conv_bgr_to_rgb", w)
    patch = x[1:4, 1:4]
    np.testing.assert_allclose(
        np.einsum("hwi,hwio->o", patch, flipped), np.einsum("hwi,hwio->o", patch[..., ::-1], w)
    )
    with pytest.raises(WeightsError, match="3 input channels"):
        layout.apply_rule("keras_conv_bgr_to_rgb", np.zeros((7, 7, 4, 8)))

    from tests.weights.test_parity import TOLERANCE, convert_case, relative_error

    model, _, x, ref = convert_case("keras_resnet50")
    assert relative_error(model, x, ref) <= TOLERANCE
    assert relative_error(model, x[..., ::-1], ref) > 100 * TOLERANCE


def test_keras_file_into_the_timm_layout_is_refused():
    """Keras ResNet50 weights do not fit our timm-layout resnet50 (conv biases, strides): the
    error lists the biases left unused instead of loading part of the file."""
    spec = CASES["keras_resnet50"]
    weights = read_weights(os.path.join(FIXTURES, spec["file"]))
    with pytest.raises(WeightsError, match=r"source tensors left unused[\s\S]*conv1_conv/bias"):
        convert.load_weights_into(
            _create("keras_resnet50", "resnet50"), "resnet50", "keras", weights
        )


def test_timm_file_into_the_keras_layout_is_refused():
    weights = read_weights(os.path.join(FIXTURES, "timm_resnet50.safetensors"))
    with pytest.raises(WeightsError, match=r"no source tensor[\s\S]*stem.conv.bias"):
        convert.load_weights_into(
            _create("timm_resnet50", "keras_resnet50"), "keras_resnet50", "timm", weights
        )


def test_bit_style_resnetv2_is_refused():
    """timm's BiT ResNetV2 (GroupNorm: no running statistics) cannot load into our BatchNorm
    model; the error names the missing statistics."""
    weights = read_weights(os.path.join(FIXTURES, "timm_resnetv2_50.safetensors"))
    bit = {k: v for k, v in weights.items() if not k.endswith(("running_mean", "running_var"))}
    with pytest.raises(WeightsError, match=r"no source tensor[\s\S]*norm1.mean"):
        convert.load_weights_into(_create("timm_resnetv2_50"), "resnetv2_50", "timm", bit)


def test_abstract_model_with_a_fresh_head_is_refused():
    """A new head must be initialised, so skip_head needs a concrete model: a clear error, not a
    model that fails later when called."""
    weights = read_weights(os.path.join(FIXTURES, "timm_resnet50.safetensors"))
    with pytest.raises(WeightsError, match="skip_head"):
        convert.load_weights_into(
            _create("timm_resnet50"), "resnet50", "timm", weights, skip_head=True
        )
