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

from jaxcls.weights.maps import assemble, register, torch_leaf


@register("timm", "resnetv2")
def timm_map(model_name: str, target):
    def leaf(path, shape):
        if path[0] == "head" and path[-1] == "kernel":
            return "weight", "torch_conv1x1_to_linear"
        return torch_leaf(path, shape)

    def prefix(module):
        if module[0] == "stages":
            _, s, b, *sub = module
            return ".".join(["stages", str(s), "blocks", str(b), *sub])
        return {("stem", "conv"): "stem.conv", ("norm",): "norm", ("head",): "head.fc"}.get(module)

    return assemble(target, prefix, leaf=leaf)
