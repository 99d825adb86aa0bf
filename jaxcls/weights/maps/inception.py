"""Name maps for Inception-v3 (timm, torchvision, keras.applications).

* timm and torchvision name it identically (timm's is the torchvision port), and so does our
  model: ``Conv2d_1a_3x3.conv``/``.bn`` ... ``Mixed_7c.branch_pool``, ``AuxLogits.conv0/conv1/fc``
  and ``fc`` (our ``head``). torchvision files always hold the auxiliary classifier
  (``AuxLogits.*``); when our model is built without it (``aux_logits=False``, timm's default)
  those tensors are deliberately left unused. torchvision's pretrained model also sets
  ``transform_input=True`` (re-normalising ImageNet-normalised input to [-1, 1]); the registry
  feeds [-1, 1] input directly, which is the same computation.
* Keras 3 ``inception_v3.py`` creates its ``conv2d_bn`` layers without names: they are
  ``conv2d``, ``conv2d_1``, ... and ``batch_normalization``, ``batch_normalization_1``, ... in
  creation order, offset by whatever the Keras session had created before (the published
  ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``, written by Keras 2.0, counts from
  ``conv2d_1``). The renamer sorts each kind by its number and renumbers from zero; the map then
  follows the creation order of ``keras/src/applications/inception_v3.py``, which is the order of
  each of our blocks' branches. Convs have no bias, BatchNorm has no gamma (``scale=False``):
  our ``keras_inception_v3`` (alias ``InceptionV3``) has neither.
"""

from __future__ import annotations

import re

from jaxcls.weights.errors import WeightsError
from jaxcls.weights.maps import assemble, keras_leaf, register


def _torch_inception_map(model_name: str, target):
    return assemble(target, lambda m: "fc" if m == ("head",) else ".".join(map(str, m)))


register("timm", "inception", ignore=("AuxLogits.*",))(_torch_inception_map)
register("torchvision", "inception", ignore=("AuxLogits.*",))(_torch_inception_map)

# Each block's ConvNormAct modules in Keras' creation order (inception_v3.py, top to bottom).
# fmt: off
_A = ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
      "branch3x3dbl_3", "branch_pool")
_B = ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")
_C = ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
      "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool")
_D = ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
      "branch7x7x3_4")
_E = ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
      "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool")
_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
_BLOCKS = (("Mixed_5b", _A), ("Mixed_5c", _A), ("Mixed_5d", _A), ("Mixed_6a", _B),
           ("Mixed_6b", _C), ("Mixed_6c", _C), ("Mixed_6d", _C), ("Mixed_6e", _C),
           ("Mixed_7a", _D), ("Mixed_7b", _E), ("Mixed_7c", _E))
# fmt: on
KERAS_ORDER = tuple((s,) for s in _STEM) + tuple((b, m) for b, ms in _BLOCKS for m in ms)

_AUTO = re.compile(r"^(conv2d|batch_normalization)(?:_(\d+))?$")


def _keras_auto_name(kind: str, k: int) -> str:
    return kind if k == 0 else f"{kind}_{k}"


def rename_keras(names: list[str]) -> dict[str, str]:
    """Renumbers auto-named ``conv2d[_N]``/``batch_normalization[_N]`` layers from zero, keeping
    their order (``conv2d_1 .. conv2d_94`` -> ``conv2d .. conv2d_93``)."""
    layers: dict[str, set[tuple[int, str]]] = {}
    for n in names:
        m = _AUTO.match(n.split("/", 1)[0])
        if m:
            layers.setdefault(m.group(1), set()).add((int(m.group(2) or 0), m.group(0)))
    new = {}
    for kind, found in layers.items():
        for k, (_, old) in enumerate(sorted(found)):
            new[old] = _keras_auto_name(kind, k)
    out = {}
    for n in names:
        layer, sep, var = n.partition("/")
        if layer in new and new[layer] != layer:
            out[n] = f"{new[layer]}{sep}{var}"
    return out


@register("keras", "inception", rename=rename_keras)
def keras_map(model_name: str, target):
    """keras.applications ``InceptionV3`` into ``keras_inception_v3`` (creation-order names)."""
    if any(p[0] == "AuxLogits" for p in target):
        raise WeightsError("Keras InceptionV3 has no auxiliary classifier: build aux_logits=False")
    if any(p[-1] == "scale" for p in target):
        raise WeightsError(
            f"Keras InceptionV3's BatchNorm has no gamma (scale=False) and its pools exclude the "
            f"padding; {model_name} has BatchNorm scales: convert into keras_inception_v3"
        )
    names = {("head",): "predictions"}
    for k, module in enumerate(KERAS_ORDER):
        names[(*module, "conv")] = _keras_auto_name("conv2d", k)
        names[(*module, "bn")] = _keras_auto_name("batch_normalization", k)
    return assemble(target, names.get, leaf=keras_leaf, sep="/")
