"""Name maps for ResNet (v1.5, the torchvision/timm ``resnet18`` ... ``resnet152``).

timm and torchvision name a ResNet identically: ``conv1``/``bn1`` stem, ``layer<stage+1>.<block>``
with ``conv1..3``/``bn1..3`` and ``downsample.0`` (conv) / ``downsample.1`` (BatchNorm), ``fc``.
"""

from __future__ import annotations

from jaxcls.weights.maps import assemble, register


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
