"""Tests of the model registry: names, aliases, errors, overrides."""

import jax.numpy as jnp
import pytest
from flax import nnx

from jaxcls import models


def test_list_models_sorted_and_contains_required_names():
    names = models.list_models()
    assert names == sorted(names)
    for required in ("cnn", "cnn_small", "cnn_conv4invto128", "resnet18", "resnet50",
                     "resnet152", "efficientnet_b0", "resnetv2_50", "resnetv2_101",
                     "resnetv2_152", "densenet121", "densenet169", "densenet201", "vgg16",
                     "vgg19", "vgg16_bn", "vgg19_bn", "inception_v3"):  # fmt: skip
        assert required in names
    assert models.list_models("resnet") == [n for n in names if "resnet" in n]


def test_unknown_name_lists_known_names_and_close_matches():
    with pytest.raises(ValueError) as err:
        models.create("resnet51", num_classes=10, rngs=nnx.Rngs(0))
    msg = str(err.value)
    assert "unknown model 'resnet51'" in msg
    assert "Did you mean" in msg and "resnet50" in msg
    assert "efficientnet_b0" in msg  # the full list of known names


def test_unknown_override_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['filterz'\]"):
        models.create("cnn", num_classes=10, rngs=nnx.Rngs(0), filterz=(8,))


def test_aliases_resolve_to_registered_names():
    aliases = models.list_aliases()
    for alias, name in aliases.items():
        assert name in models.list_models()
        assert alias not in models.list_models()
        assert models.model_info(alias).name == name


def test_keras_names_of_the_product_card_resolve():
    # The models users compare in Keras notebooks, by their keras.applications names.
    expected = {
        "MobileNetV2": "mobilenetv2_100",
        "ResNet50": "keras_resnet50",
        "ResNet50V2": "keras_resnet50v2",
        "EfficientNetB0": "tf_efficientnet_b0",
        "EfficientNetB3": "tf_efficientnet_b3",
        "EfficientNetV2S": "tf_efficientnetv2_s",
        "DenseNet121": "densenet121",
        "InceptionV3": "keras_inception_v3",
        "VGG16": "vgg16",
    }
    for alias, name in expected.items():
        assert models.model_info(alias).name == name
    assert models.model_info("InceptionV3").input_size == 299


def test_overrides_change_the_architecture():
    m = models.create("cnn", num_classes=3, rngs=nnx.Rngs(0), filters=(8, 16), dense=(32,))
    assert [s[-1].conv.kernel.shape[-1] if len(s) else None for s in m.stages] == [None, 16]
    assert m.stem.conv.kernel.shape == (3, 3, 3, 8)
    assert m.head_hidden.dense[0].out_features == 32
    assert m.head.in_features == 32 and m.head.out_features == 3


def test_num_classes_must_be_positive():
    with pytest.raises(ValueError, match="num_classes"):
        models.create("cnn_small", num_classes=0, rngs=nnx.Rngs(0))


def test_default_sizes_are_registered():
    assert models.model_info("efficientnet_b0").input_size == 224
    assert models.model_info("efficientnet_b3").input_size == 300
    assert models.model_info("resnet50").input_size == 224


def test_flatten_cnn_rejects_mismatched_input():
    m = models.create("cnn_conv4invto128", num_classes=2, rngs=nnx.Rngs(0), input_size=32)
    with pytest.raises(ValueError, match="input_size"):
        m(jnp.zeros((1, 64, 64, 3)), train=False)
