"""The reference parameter counts of the model zoo from timm (and Keras), recorded in
``tests/models/test_param_counts.py`` (the library half of ``tools/param_counts.py``).

It runs in a separate venv with the reference implementations (torch, timm, keras), which are not
dependencies of jaxcls, so it imports nothing of jaxcls (nor JAX): `print_tables` builds each model
with ``pretrained=False`` at 1000 classes (offline) and prints Python dict literals ``name: count``
(timm) and, optionally, the trainable-parameter count of the corresponding ``keras.applications``
model.
"""

from __future__ import annotations

# Every canonical jaxcls model name that has a timm counterpart of the same name, except scratch
# CNNs. Listed here (not imported from jaxcls) so the tool runs in the reference venv alone.
TIMM_NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "tf_efficientnet_b0", "tf_efficientnet_b1", "tf_efficientnet_b2", "tf_efficientnet_b3",
    "tf_efficientnet_b4", "tf_efficientnet_b5", "tf_efficientnet_b6", "tf_efficientnet_b7",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3",
    "efficientnet_lite4",
    "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
    "tf_efficientnet_lite3", "tf_efficientnet_lite4",
    "mobilenetv2_100", "mobilenetv2_140",
    "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l",
    "tf_efficientnetv2_b0", "tf_efficientnetv2_b1", "tf_efficientnetv2_b2", "tf_efficientnetv2_b3",
    "resnetv2_50", "resnetv2_101", "resnetv2_152",
    "densenet121", "densenet169", "densenet201",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "inception_v3",
]  # fmt: skip

# keras.applications constructor -> the jaxcls model whose parameters it should match (keras_*: the
# Keras layout of a family, whose count differs from timm's by conv biases or BatchNorm scales).
KERAS_NAMES = {
    **{f"EfficientNetB{i}": f"tf_efficientnet_b{i}" for i in range(8)},
    **{f"EfficientNetV2B{i}": f"tf_efficientnetv2_b{i}" for i in range(4)},
    "EfficientNetV2S": "tf_efficientnetv2_s",
    "EfficientNetV2M": "tf_efficientnetv2_m",
    "EfficientNetV2L": "tf_efficientnetv2_l",
    "MobileNetV2": "mobilenetv2_100",
    **{f"ResNet{d}": f"keras_resnet{d}" for d in (50, 101, 152)},
    **{f"ResNet{d}V2": f"keras_resnet{d}v2" for d in (50, 101, 152)},
    **{f"DenseNet{d}": f"densenet{d}" for d in (121, 169, 201)},
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "InceptionV3": "keras_inception_v3",
}


def timm_counts(names: list[str]) -> dict[str, int]:
    """timm's parameter count per model name, printed as dict-literal lines as they come."""
    import timm

    counts = {}
    for name in names:
        model = timm.create_model(name, pretrained=False, num_classes=1000)
        counts[name] = sum(p.numel() for p in model.parameters())
        print(f"    {name!r}: {counts[name]:_},", flush=True)
    return counts


def keras_counts(names: list[str]) -> dict[str, int]:
    """Keras' trainable-parameter count per ``keras.applications`` constructor, printed as
    dict-literal lines as they come."""
    import keras

    counts = {}
    for name in names:
        model = getattr(keras.applications, name)(weights=None, classes=1000)
        counts[name] = sum(int(w.numpy().size) for w in model.trainable_weights)
        print(f"    {name!r}: {counts[name]:_},  # -> {KERAS_NAMES[name]}", flush=True)
    return counts


def print_tables(keras: bool = False, only: list[str] | None = None) -> None:
    """Prints ``TIMM_PARAMS = {...}`` and, with ``keras``, ``KERAS_TRAINABLE = {...}``, restricted
    to the names in ``only`` when given."""
    print("TIMM_PARAMS = {")
    timm_counts([n for n in TIMM_NAMES if not only or n in only])
    print("}")
    if keras:
        print("KERAS_TRAINABLE = {")
        keras_counts([n for n in KERAS_NAMES if not only or n in only])
        print("}")
