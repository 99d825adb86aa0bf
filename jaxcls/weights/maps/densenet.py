"""Name maps for DenseNet-121/169/201 (timm, torchvision, keras.applications).

* timm and torchvision: ``features.conv0``/``norm0`` stem, ``features.denseblock<K>.denselayer<J>``
  with ``norm1/conv1/norm2/conv2``, ``features.transition<K>`` with ``norm/conv`` (between block K
  and K+1), ``features.norm5``, ``classifier``. torchvision files saved before 0.3 spell the dense
  layers' modules ``norm.1``/``conv.1``; torchvision's own loader renames them with a regex
  (``densenet._load_state_dict``) and so do we.
* Keras 3 (``keras/src/applications/densenet.py``): ``conv1_conv``/``conv1_bn``,
  ``conv<K+1>_block<J>_0_bn`` (norm1), ``_1_conv``, ``_1_bn``, ``_2_conv``, ``pool<K+1>_bn``/
  ``pool<K+1>_conv`` (the transition after block K), ``bn``, ``predictions``. The published
  ``densenet*_weights_tf_dim_ordering_tf_kernels.h5`` files come from keras-applications 1.0, which
  named the stem ``conv1/conv``, ``conv1/bn`` and the classifier ``fc1000``: renamed here.
  Keras uses BatchNorm eps 1.001e-5 (``bn_eps`` of our model; torchvision 1e-5).
"""

from __future__ import annotations

import re

from jaxcls.weights.maps import assemble, keras_layer_renamer, keras_leaf, register

# torchvision densenet._load_state_dict: '...denselayer1.norm.1.weight' -> '...denselayer1.norm1.weight'
_OLD_TORCH = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_OLD_KERAS = {"conv1/conv": "conv1_conv", "conv1/bn": "conv1_bn", "fc1000": "predictions"}


def _rename_torch(names: list[str]) -> dict[str, str]:
    out = {}
    for n in names:
        m = _OLD_TORCH.match(n)
        if m:
            out[n] = m.group(1) + m.group(2)
    return out


def _torch_densenet_map(model_name: str, target):
    top = {("stem", "conv"): "features.conv0", ("stem", "bn"): "features.norm0",
           ("norm5",): "features.norm5", ("head",): "classifier"}  # fmt: skip

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        stage = module[1]
        if module[2] == "transition":  # Our stage K+1 starts with torchvision's transition K.
            return f"features.transition{stage}.{module[3]}"
        _, _, _, layer, sub = module
        return f"features.denseblock{stage + 1}.denselayer{layer + 1}.{sub}"

    return assemble(target, prefix)


register("timm", "densenet", rename=_rename_torch)(_torch_densenet_map)
register("torchvision", "densenet", rename=_rename_torch)(_torch_densenet_map)

_KERAS_LAYER = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}
_KERAS_TRANSITION = {"norm": "bn", "conv": "conv"}


@register("keras", "densenet", rename=keras_layer_renamer(_OLD_KERAS))
def keras_map(model_name: str, target):
    """keras.applications ``DenseNet121/169/201`` (and ``densenet.DenseNet(blocks)``)."""
    top = {("stem", "conv"): "conv1_conv", ("stem", "bn"): "conv1_bn", ("norm5",): "bn",
           ("head",): "predictions"}  # fmt: skip

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        stage = module[1]
        if module[2] == "transition":
            return f"pool{stage + 1}_{_KERAS_TRANSITION[module[3]]}"
        _, _, _, layer, sub = module
        return f"conv{stage + 2}_block{layer + 1}_{_KERAS_LAYER[sub]}"

    return assemble(target, prefix, leaf=keras_leaf, sep="/")
