"""Name maps for ResNet v1/v1.5, :mod:`jaxcls.models.resnet`.

* timm and torchvision (``resnet18`` ... ``resnet152``) name a ResNet identically: ``conv1``/``bn1``
  stem, ``layer<stage+1>.<block>`` with ``conv1..3``/``bn1..3`` and ``downsample.0`` (conv) /
  ``downsample.1`` (BatchNorm), ``fc``.
* Keras (``keras.applications.ResNet50/101/152`` = our ``keras_resnet50/101/152``, keras 3.15
  ``applications/resnet.py``): ``conv1_conv``/``conv1_bn`` stem, ``conv<stage+2>_block<block+1>_``
  ``{1,2,3}_{conv,bn}`` for the branch and ``_0_{conv,bn}`` for the projection shortcut,
  ``predictions``; variables ``<layer>/<var>``. These weights were trained on BGR input (Keras'
  'caffe' ``preprocess_input``): the stem kernel's input channels are reversed on conversion
  (``keras_conv_bgr_to_rgb``), so the converted model takes RGB like every jaxcls model, with the
  registry contract's RGB-listed mean (``registry.CAFFE``).
"""

from __future__ import annotations

from jaxcls.weights.maps import assemble, keras_leaf, register

_KERAS_BRANCH = {"conv1": "1_conv", "bn1": "1_bn", "conv2": "2_conv", "bn2": "2_bn",
                 "conv3": "3_conv", "bn3": "3_bn"}  # fmt: skip


def _torch_resnet_map(model_name: str, target):
    top = {("stem", "conv"): "conv1", ("stem", "bn"): "bn1", ("head",): "fc"}

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        _, s, b, *sub = module
        if sub[0] == "downsample":
            sub = ["downsample", {"conv": "0", "bn": "1"}[sub[1]]]
        return ".".join([f"layer{s + 1}", str(b), *sub])

    return assemble(target, prefix)


register("timm", "resnet")(_torch_resnet_map)
register("torchvision", "resnet")(_torch_resnet_map)


@register("keras", "resnet")
def keras_map(model_name: str, target):
    """keras.applications ResNet50/101/152 (``layout='keras'`` models only)."""
    top = {("stem", "conv"): "conv1_conv", ("stem", "bn"): "conv1_bn", ("head",): "predictions"}

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        _, s, b, *sub = module
        block = f"conv{s + 2}_block{b + 1}"
        if sub[0] == "downsample":
            return f"{block}_0_{sub[1]}"
        return f"{block}_{_KERAS_BRANCH[sub[0]]}" if sub[0] in _KERAS_BRANCH else None

    return assemble(
        target,
        prefix,
        leaf=keras_leaf,
        sep="/",
        rules={("stem", "conv", "kernel"): "keras_conv_bgr_to_rgb"},
    )
