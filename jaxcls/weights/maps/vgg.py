"""Name maps for VGG-11/13/16/19 and their ``_bn`` variants (timm, torchvision, keras.applications).

Our VGG is timm's: the convs are ``stem`` then ``stages[i][j]``, and the classifier is a
``ConvMlp`` (``pre_logits.fc1`` a 7x7 conv, ``fc2`` a 1x1 conv) + ``head``.

* timm and torchvision number the convs by their position in one ``features`` Sequential: each
  conv is followed by ReLU (and a BatchNorm before it in ``_bn`` models), each block by a max
  pool, so conv k sits at index ``sum(2 or 3 per earlier conv) + earlier pools`` and its
  BatchNorm at the next index. timm's head is ``pre_logits.fc1/fc2`` + ``head.fc``.
  torchvision's is ``classifier.0`` (Linear on the NCHW-flattened 7x7 map) / ``classifier.3`` /
  ``classifier.6``: layout rules ``torch_flat_linear_to_conv`` and ``torch_linear_to_conv1x1``.
  Identical computation up to a 7x7 final map (224 px; smaller maps are average-pooled up to 7x7
  by both); on larger maps torchvision pools down to 7x7 where our head slides (as timm's).
* Keras 3 ``vgg16.py``/``vgg19.py``: ``block<b>_conv<c>``, ``fc1`` (Dense on the NHWC-flattened
  7x7 map, ``keras_flat_dense_to_conv``), ``fc2``, ``predictions``. Keras VGG is a 'caffe'-mode
  model (BGR input); the first conv's input channels are reversed at conversion
  (``keras_conv_bgr_to_rgb``) so the converted model takes RGB like every other model here.
"""

from __future__ import annotations

from jaxcls.weights.errors import WeightsError
from jaxcls.weights.maps import assemble, keras_leaf, register


def _convs(target) -> list[tuple]:
    """Our conv-block module paths in network order, grouped by VGG block:
    ``[[('stem',), ('stages', 0, 0)], [('stages', 1, 0), ...], ...]``."""
    blocks: dict[int, set[int]] = {}
    for path in target:
        if path[0] == "stages":
            blocks.setdefault(path[1], set()).add(path[2])
    out = [[("stem",)] + [("stages", 0, j) for j in sorted(blocks.pop(0, ()))]]
    for i in sorted(blocks):
        out.append([("stages", i, j) for j in sorted(blocks[i])])
    return out


def _torch_index(target) -> dict[tuple, int]:
    """Our conv-block path -> index of its conv in timm/torchvision ``features``."""
    per_conv = 3 if ("stem", "bn", "scale") in target else 2  # conv [bn] relu
    index, i = {}, 0
    for block in _convs(target):
        for conv in block:
            index[conv] = i
            i += per_conv
        i += 1  # max pool
    return index


def _torch_prefix(target, head: dict[tuple, str]):
    index = _torch_index(target)

    def prefix(module):
        if module in head:
            return head[module]
        block, sub = module[:-1], module[-1]
        if block not in index:
            return None
        return f"features.{index[block] + (sub == 'bn')}"

    return prefix


@register("timm", "vgg")
def timm_map(model_name: str, target):
    """timm ``vgg*``/``vgg*_bn`` (``pre_logits`` ConvMlp, ``head.fc``)."""
    head = {("pre_logits", "fc1"): "pre_logits.fc1", ("pre_logits", "fc2"): "pre_logits.fc2",
            ("head",): "head.fc"}  # fmt: skip
    return assemble(target, _torch_prefix(target, head))


_TV_RULES = {("pre_logits", "fc1", "kernel"): "torch_flat_linear_to_conv",
             ("pre_logits", "fc2", "kernel"): "torch_linear_to_conv1x1"}  # fmt: skip
_KERAS_RULES = {("pre_logits", "fc1", "kernel"): "keras_flat_dense_to_conv",
                ("pre_logits", "fc2", "kernel"): "keras_dense_to_conv1x1",
                ("stem", "conv", "kernel"): "keras_conv_bgr_to_rgb"}  # fmt: skip


@register("torchvision", "vgg")
def torchvision_map(model_name: str, target):
    """torchvision ``vgg*``/``vgg*_bn`` (``classifier.0/3/6`` Linear layers)."""
    head = {("pre_logits", "fc1"): "classifier.0", ("pre_logits", "fc2"): "classifier.3",
            ("head",): "classifier.6"}  # fmt: skip
    return assemble(target, _torch_prefix(target, head), rules=_TV_RULES)


@register("keras", "vgg")
def keras_map(model_name: str, target):
    """keras.applications ``VGG16``/``VGG19`` (no BatchNorm; BGR input folded into the stem)."""
    if ("stem", "bn", "scale") in target:
        raise WeightsError(f"Keras VGG has no BatchNorm; {model_name} has (use vgg16 / vgg19)")
    names = {("pre_logits", "fc1"): "fc1", ("pre_logits", "fc2"): "fc2", ("head",): "predictions"}
    for b, block in enumerate(_convs(target)):
        for c, conv in enumerate(block):
            names[(*conv, "conv")] = f"block{b + 1}_conv{c + 1}"
    return assemble(target, names.get, leaf=keras_leaf, sep="/", rules=_KERAS_RULES)
