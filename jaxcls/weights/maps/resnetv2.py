"""Name maps for the pre-activation ResNet (ResNet v2), :mod:`jaxcls.models.resnetv2`.

* timm ``resnetv2_50/101/152`` (``ResNetV2`` with ``create_conv2d`` + ``BatchNormAct2d``):
  ``stem.conv``, ``stages.<s>.blocks.<b>.{downsample.conv, norm1, conv1, norm2, conv2, norm3,
  conv3}``, the final ``norm`` and ``head.fc`` - a 1x1 *conv* (``ClassifierHead(use_conv=True)``)
  with a bias, converted to our Linear by ``torch_conv1x1_to_linear``. Our module names are timm's,
  so the map is the identity but for the head. timm's BiT models (``resnetv2_50x1_bit`` ...) use
  weight-standardised convs and GroupNorm, which our model does not implement: this map refuses
  them (their ``norm1.weight`` has no ``running_mean`` beside it, a missing-tensor error).
"""

from __future__ import annotations

from jaxcls.weights.maps import assemble, keras_leaf, register


@register("timm", "resnetv2")
def timm_map(model_name: str, target):
    def prefix(module):
        if module[0] == "stages":
            _, s, b, *sub = module
            return ".".join(["stages", str(s), "blocks", str(b), *sub])
        return {("stem", "conv"): "stem.conv", ("norm",): "norm", ("head",): "head.fc"}.get(module)

    return assemble(target, prefix, rules={("head", "kernel"): "torch_conv1x1_to_linear"})


_KERAS_BRANCH = {"norm1": "preact_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv",
                 "norm3": "2_bn", "conv3": "3_conv", "downsample": "0_conv"}  # fmt: skip


@register("keras", "resnetv2")
def keras_map(model_name: str, target):
    """keras.applications ResNet50V2/101V2/152V2 (keras 3.15 ``applications/resnet_v2.py`` and
    ``resnet.py``'s ``residual_block_v2``): ``conv1_conv`` stem (no BN: pre-activation),
    ``conv<stage+2>_block<block+1>_{preact_bn, 1_conv, 1_bn, 2_conv, 2_bn, 3_conv, 0_conv}``,
    ``post_bn``, ``predictions``. RGB input in [-1, 1] ('tf' mode): no channel flip."""
    top = {("stem", "conv"): "conv1_conv", ("norm",): "post_bn", ("head",): "predictions"}

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        _, s, b, *sub = module
        name = _KERAS_BRANCH.get(sub[0])
        return None if name is None else f"conv{s + 2}_block{b + 1}_{name}"

    return assemble(target, prefix, leaf=keras_leaf, sep="/")
