"""Name maps for the EfficientNet family (EfficientNet B0-B7, Lite, V2, MobileNetV2).

Our blocks use timm's module names, so the timm map only renames the stem/head and
``stages`` -> ``blocks``. The other sources name blocks by position:

* efficientnet_pytorch (lukemelas): ``_conv_stem``, ``_bn0``, ``_blocks.<flat index>`` with
  ``_expand_conv/_bn0`` (expansion), ``_depthwise_conv/_bn1``, ``_se_reduce/_se_expand``,
  ``_project_conv/_bn2``; then ``_conv_head``, ``_bn1``, ``_fc``.
* torchvision EfficientNet/EfficientNetV2: ``features.0`` stem, ``features.<stage+1>.<block>.block
  .<k>`` where k counts the block's sub-layers (conv-bn pairs ``.0``/``.1``, squeeze-excitation
  ``fc1``/``fc2``), ``features.<last>`` head conv, ``classifier.1``.
* torchvision MobileNetV2: ``features.<flat index + 1>.conv.<k>`` and ``classifier.1``.
* keras.applications (``<layer>/<variable>``, see :func:`keras_map`): EfficientNet and
  EfficientNetV2 name blocks ``block<stage + 1><a, b, ...>_<layer>``; MobileNetV2 names them
  ``expanded_conv_*`` (the first) and ``block_<flat index>_*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxcls.weights.errors import WeightsError
from jaxcls.weights.maps import assemble, keras_layer_renamer, keras_leaf, register


def _blocks(target: Mapping[tuple, Any]) -> list[tuple[int, int, set[str]]]:
    """(stage, block, sub-module names) of every block, in order."""
    found: dict[tuple[int, int], set[str]] = {}
    for path in target:
        if path[0] == "stages":
            found.setdefault((path[1], path[2]), set()).add(path[3])
    return [(s, b, found[(s, b)]) for s, b in sorted(found)]


def _kind(modules: set[str]) -> str:
    if "conv_pwl" in modules and "conv_dw" in modules:
        return "ir"  # InvertedResidual: expand, depthwise, (SE), project.
    if "conv_dw" in modules:
        return "ds"  # DepthwiseSeparable: depthwise, (SE), project.
    if "conv_exp" in modules:
        return "er"  # EdgeResidual (fused MBConv): 3x3 expand, (SE), project.
    if "conv" in modules:
        return "cba"  # ConvBnAct.
    raise WeightsError(f"unknown EfficientNet block with modules {sorted(modules)}")


def _assemble(
    target, top: dict[tuple, str], block_prefix, **assemble_kw
) -> dict[tuple, tuple[str, str]]:
    """Applies ``top`` (our module path -> source prefix) and ``block_prefix(stage, block,
    kind, index, module path) -> source prefix`` to every target leaf (``assemble_kw``: the
    ``leaf``/``sep`` of :func:`jaxcls.weights.maps.assemble`)."""
    blocks = _blocks(target)
    index = {(s, b): i for i, (s, b, _) in enumerate(blocks)}
    kinds = {(s, b): _kind(m) for s, b, m in blocks}

    def prefix(module):
        if module[0] != "stages":
            return top.get(module)
        s, b = module[1], module[2]
        return block_prefix(s, b, kinds[(s, b)], index[(s, b)], module[3:])

    return assemble(target, prefix, **assemble_kw)


@register("timm", "efficientnet")
def timm_map(model_name: str, target):
    """timm ``EfficientNet``/``MobileNetV2``/``EfficientNetV2`` (including ``tf_`` ports)."""
    top = {
        ("stem", "conv"): "conv_stem",
        ("stem", "bn"): "bn1",
        ("conv_head", "conv"): "conv_head",
        ("conv_head", "bn"): "bn2",
        ("head",): "classifier",
    }
    return _assemble(
        target, top, lambda s, b, k, i, sub: ".".join(["blocks", str(s), str(b), *sub])
    )


_LUKE_BLOCK = {
    "ir": {
        "conv_pw": "_expand_conv",
        "bn1": "_bn0",
        "conv_dw": "_depthwise_conv",
        "bn2": "_bn1",
        "conv_pwl": "_project_conv",
        "bn3": "_bn2",
    },
    "ds": {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"},
}
_SE = {"conv_reduce": "_se_reduce", "conv_expand": "_se_expand"}


@register("efficientnet_pytorch", "efficientnet")
def efficientnet_pytorch_map(model_name: str, target):
    """lukemelas/EfficientNet-PyTorch naming (B0-B7, and Lite checkpoints in that style)."""
    top = {
        ("stem", "conv"): "_conv_stem",
        ("stem", "bn"): "_bn0",
        ("conv_head", "conv"): "_conv_head",
        ("conv_head", "bn"): "_bn1",
        ("head",): "_fc",
    }

    def block(s, b, kind, i, sub):
        if kind not in _LUKE_BLOCK:
            raise WeightsError(f"efficientnet_pytorch has no {kind} blocks ({model_name})")
        name = _SE[sub[1]] if sub[0] == "se" else _LUKE_BLOCK[kind][sub[0]]
        return f"_blocks.{i}.{name}"

    return _assemble(target, top, block)


# torchvision: sub-layer index inside ``.block`` for each of our modules, per block kind.
_TV_BLOCK = {
    "ir": {"conv_pw": "0.0", "bn1": "0.1", "conv_dw": "1.0", "bn2": "1.1", "se": "2",
           "conv_pwl": "3.0", "bn3": "3.1"},
    "ds": {"conv_dw": "0.0", "bn1": "0.1", "se": "1", "conv_pw": "2.0", "bn2": "2.1"},
    "er": {"conv_exp": "0.0", "bn1": "0.1", "conv_pwl": "1.0", "bn2": "1.1"},
    "cba": {"conv": "0.0", "bn1": "0.1"},
}  # fmt: skip
_TV_SE = {"conv_reduce": "fc1", "conv_expand": "fc2"}


def _tv_mobilenetv2_block(kind, i, sub):
    layers = (
        {
            "conv_pw": "0.0",
            "bn1": "0.1",
            "conv_dw": "1.0",
            "bn2": "1.1",
            "conv_pwl": "2",
            "bn3": "3",
        }
        if kind == "ir"
        else {"conv_dw": "0.0", "bn1": "0.1", "conv_pw": "1", "bn2": "2"}
    )
    return f"features.{i + 1}.conv.{layers[sub[0]]}"


@register("torchvision", "efficientnet")
def torchvision_map(model_name: str, target):
    """torchvision ``efficientnet_b*``, ``efficientnet_v2_*`` and ``mobilenet_v2``."""
    n_stages = 1 + max(p[1] for p in target if p[0] == "stages")
    mobilenet = model_name.lower().startswith("mobilenet")
    head = f"features.{len(_blocks(target)) + 1}" if mobilenet else f"features.{n_stages + 1}"
    top = {
        ("stem", "conv"): "features.0.0",
        ("stem", "bn"): "features.0.1",
        ("conv_head", "conv"): f"{head}.0",
        ("conv_head", "bn"): f"{head}.1",
        ("head",): "classifier.1",
    }

    def block(s, b, kind, i, sub):
        if mobilenet:
            return _tv_mobilenetv2_block(kind, i, sub)
        layer = _TV_BLOCK[kind][sub[0]]
        if sub[0] == "se":
            layer = f"{layer}.{_TV_SE[sub[1]]}"
        return f"features.{s + 1}.{b}.block.{layer}"

    return _assemble(target, top, block)


# keras.applications layer names inside a block, per block kind (efficientnet.py: ``block``;
# efficientnet_v2.py: ``MBConvBlock``/``FusedMBConvBlock``, whose depthwise layer is ``dwconv2``
# and whose expand-ratio-1 fused block is a single ``project_conv``).
_KERAS_BLOCK = {
    "ir": {"conv_pw": "expand_conv", "bn1": "expand_bn", "conv_dw": "dwconv", "bn2": "bn",
           "conv_pwl": "project_conv", "bn3": "project_bn"},
    "ds": {"conv_dw": "dwconv", "bn1": "bn", "conv_pw": "project_conv", "bn2": "project_bn"},
    "er": {"conv_exp": "expand_conv", "bn1": "expand_bn", "conv_pwl": "project_conv",
           "bn2": "project_bn"},
    "cba": {"conv": "project_conv", "bn1": "project_bn"},
}  # fmt: skip
_KERAS_SE = {"conv_reduce": "se_reduce", "conv_expand": "se_expand"}
# mobilenet_v2.py ``_inverted_res_block``.
_KERAS_MOBILENETV2_BLOCK = {
    "ir": {"conv_pw": "expand", "bn1": "expand_BN", "conv_dw": "depthwise",
           "bn2": "depthwise_BN", "conv_pwl": "project", "bn3": "project_BN"},
    "ds": {"conv_dw": "depthwise", "bn1": "depthwise_BN", "conv_pw": "project",
           "bn2": "project_BN"},
}  # fmt: skip


# EfficientNet B0-B7's in-model Normalization layer: its statistics are the preprocessing contract.
_KERAS_UNUSED = ("normalization*/mean", "normalization*/variance", "normalization*/count")


# keras-applications 1.0's MobileNetV2 ImageNet downloads call the classifier 'Logits' (Keras
# loads legacy .h5 files by position, so the name in the file never had to change).
_OLD_KERAS = {"Logits": "predictions"}


@register("keras", "efficientnet", ignore=_KERAS_UNUSED, rename=keras_layer_renamer(_OLD_KERAS))
def keras_map(model_name: str, target):
    """keras.applications ``EfficientNetB0-B7``, ``EfficientNetV2B0-B3/S/M/L``, ``MobileNetV2``.

    Names are ``<layer>/<variable>`` as :func:`jaxcls.weights.layout.keras_names` gives them for
    both the legacy ``.h5`` downloads and Keras 3 ``.weights.h5`` files. The in-model
    preprocessing of EfficientNet (``Rescaling`` + ``Normalization``, whose ``mean``/``variance``/
    ``count`` stay unused: our models take normalised input and the registry's preprocessing
    contract reproduces it) has no counterpart here.
    """
    from jaxcls import models

    name = models.model_info(model_name).name
    if name.startswith("mobilenetv2"):
        top = {("stem", "conv"): "Conv1", ("stem", "bn"): "bn_Conv1",
               ("conv_head", "conv"): "Conv_1", ("conv_head", "bn"): "Conv_1_bn",
               ("head",): "predictions"}  # fmt: skip

        def block(s, b, kind, i, sub):
            if kind not in _KERAS_MOBILENETV2_BLOCK:
                raise WeightsError(f"Keras MobileNetV2 has no {kind} blocks ({model_name})")
            layer = _KERAS_MOBILENETV2_BLOCK[kind].get(sub[0])
            return layer and (f"block_{i}_{layer}" if i else f"expanded_conv_{layer}")

    else:
        v2 = "efficientnetv2" in name
        top = {("stem", "conv"): "stem_conv", ("stem", "bn"): "stem_bn",
               ("conv_head", "conv"): "top_conv", ("conv_head", "bn"): "top_bn",
               ("head",): "predictions"}  # fmt: skip

        def block(s, b, kind, i, sub):
            if b >= 26:
                raise WeightsError(f"Keras names at most 26 blocks per stage ({model_name})")
            layer = _KERAS_SE.get(sub[1]) if sub[0] == "se" else _KERAS_BLOCK[kind].get(sub[0])
            if layer == "dwconv" and v2:
                layer = "dwconv2"
            return layer and f"block{s + 1}{chr(ord('a') + b)}_{layer}"

    return _assemble(target, top, block, leaf=keras_leaf, sep="/")
