"""Writes the golden parity fixtures of tests/weights/fixtures/ from the reference frameworks.

Run in an environment with torch, timm and torchvision (they are too heavy for CI, so CI compares
against what this script wrote)::

    python -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.14.1 \
        torchvision==0.29.1 timm==1.0.31 safetensors
    /work/venv-ref/bin/python tools/make_weight_fixtures.py --out tests/weights/fixtures

For each case a reference model is built with random weights (BatchNorm affine parameters and
running statistics randomised too, so a mix-up of scale/bias/mean/var shows), put in eval mode
and run on a fixed random batch. Written per case: ``<case>.safetensors`` (the state dict, float32,
as the source framework names it, float16) and ``<case>.npz`` (``input`` NHWC float32, ``logits``), plus
``cases.json`` saying which of our models and constructor arguments each case converts into.
Models are shrunk (channel/depth multipliers, 10 classes, 48x48 input) to keep the fixtures
small (weights rounded to float16-exact values and stored as float16; the reference runs in
float32) while still exercising every block type, squeeze-excite, padding convention and head.

The Keras cases (legacy ``.h5`` and Keras 3 ``.weights.h5`` files) come from the sibling
tools/make_keras_fixtures.py, run with Keras on the JAX backend.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SIZE = 48
BATCH = 2
NUM_CLASSES = 10
SMALL = {"channel_multiplier": 0.25, "depth_multiplier": 0.34}


def _timm_efficientnet(variant: str, **kw):
    from timm.models import efficientnet as e

    if variant.startswith("mobilenetv2"):
        return e._gen_mobilenet_v2(variant, kw.pop("channel_multiplier"), **kw)
    if "lite" in variant:
        return e._gen_efficientnet_lite(variant, **kw)
    return e._gen_efficientnet(variant, **kw)


def _torchvision_efficientnet(arch: str, **kw):
    from torchvision.models import efficientnet as tv

    setting, last = tv._efficientnet_conf(
        arch, width_mult=kw["width_mult"], depth_mult=kw["depth_mult"]
    )
    return tv.EfficientNet(setting, dropout=0.2, last_channel=last, num_classes=NUM_CLASSES)


def _timm_resnet(block: str, depths, **kw):
    from timm.models import resnet as r

    return r.ResNet(getattr(r, block), depths, num_classes=NUM_CLASSES, **kw)


def _timm_resnetv2(depths, **kw):
    from timm.layers import BatchNormAct2d, create_conv2d
    from timm.models import resnetv2 as r

    # resnetv2_50/101/152's layers (plain conv + BatchNorm, not BiT's StdConv + GroupNorm).
    return r.ResNetV2(
        depths, num_classes=NUM_CLASSES, conv_layer=create_conv2d, norm_layer=BatchNormAct2d, **kw
    )


def _torchvision_resnet(block: str, depths, divisor: int):
    """torchvision's ResNet with every stage ``divisor`` times narrower (torchvision has no width
    argument: ``_make_layer`` gets the narrower width, the 64-channel stem stays, and ``fc`` is
    rebuilt for the narrower features). Names and forward are torchvision's own."""
    import torch
    from torchvision.models import resnet as tv

    class Narrow(tv.ResNet):
        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
            return super()._make_layer(block, planes // divisor, blocks, stride, dilate)

    model = Narrow(getattr(tv, block), depths, num_classes=NUM_CLASSES)
    model.fc = torch.nn.Linear(model.fc.in_features // divisor, NUM_CLASSES)
    return model


def cases():
    """name -> (reference builder, our model name, our constructor overrides, source)."""
    tf = {"bn_eps": 1e-3, "pad_type": "same"}
    return {
        "timm_efficientnet_b0": (
            lambda: _timm_efficientnet("efficientnet_b0", num_classes=NUM_CLASSES, **SMALL),
            "efficientnet_b0", SMALL, "timm",
        ),
        "timm_tf_efficientnet_b0": (
            lambda: _timm_efficientnet("tf_efficientnet_b0", num_classes=NUM_CLASSES, **SMALL, **tf),
            "tf_efficientnet_b0", SMALL, "timm",
        ),
        "timm_efficientnet_lite0": (
            lambda: _timm_efficientnet("efficientnet_lite0", num_classes=NUM_CLASSES, **SMALL),
            "efficientnet_lite0", SMALL, "timm",
        ),
        "timm_mobilenetv2_100": (
            lambda: _timm_efficientnet("mobilenetv2_100", num_classes=NUM_CLASSES, channel_multiplier=0.35),
            "mobilenetv2_100", {"channel_multiplier": 0.35}, "timm",
        ),
        "torchvision_efficientnet_b0": (
            lambda: _torchvision_efficientnet("efficientnet_b0", width_mult=0.25, depth_mult=0.34),
            "efficientnet_b0", SMALL, "torchvision",
        ),
        # ResNets: 1/8 width; bottlenecks with a stride-1 projection (stage 1), strided
        # projections (stages 2-4) and identity blocks; BasicBlocks likewise.
        "timm_resnet50": (
            lambda: _timm_resnet("Bottleneck", [2, 2, 1, 1], channels=(8, 16, 32, 64)),
            "resnet50", {"depths": [2, 2, 1, 1], "widths": [8, 16, 32, 64]}, "timm",
        ),
        "torchvision_resnet18": (
            lambda: _torchvision_resnet("BasicBlock", [2, 2, 1, 1], divisor=8),
            "resnet18", {"depths": [2, 2, 1, 1], "widths": [8, 16, 32, 64]}, "torchvision",
        ),
        "torchvision_resnet50": (
            lambda: _torchvision_resnet("Bottleneck", [1, 2, 1, 1], divisor=8),
            "resnet50", {"depths": [1, 2, 1, 1], "widths": [8, 16, 32, 64]}, "torchvision",
        ),
        "timm_resnetv2_50": (
            lambda: _timm_resnetv2([2, 2, 1, 1], channels=(32, 64, 128, 256), stem_chs=16),
            "resnetv2_50", {"depths": [2, 2, 1, 1], "channels": [32, 64, 128, 256], "stem_width": 16},
            "timm",
        ),
    }  # fmt: skip


# Full-size models whose state-dict names and shapes are recorded in <source>_weight_names.json
# (our model name = the reference's), so maps are checked at full depth without torch in CI.
FULL_SIZE = {
    "timm": ("resnet18", "resnet152", "resnetv2_50", "resnetv2_152"),
    "torchvision": ("resnet34", "resnet50"),
}


def write_weight_names(out: str) -> None:
    import timm
    import torchvision

    for source, names in FULL_SIZE.items():
        build = timm.create_model if source == "timm" else torchvision.models.get_model
        table = {}
        for name in names:
            model = build(name)
            table[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
            print(f"{source} {name}: {len(table[name])} tensors")
        with open(os.path.join(out, f"{source}_weight_names.json"), "w") as f:
            json.dump(table, f, separators=(",", ":"), sort_keys=True)


def randomise_batchnorm(model, generator) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def write_case(name: str, build, model_name: str, kwargs: dict, source: str, out: str) -> dict:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build()
    randomise_batchnorm(model, torch.Generator().manual_seed(1))
    with torch.no_grad():  # fp16-exact values: stored as float16 at half the size, no loss.
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    model.eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(x).numpy()
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, os.path.join(out, f"{name}.safetensors"))
    np.savez_compressed(
        os.path.join(out, f"{name}.npz"), input=x.numpy().transpose(0, 2, 3, 1), logits=logits
    )
    n = sum(v.numel() for v in state.values())
    print(f"{name}: {type(model).__name__}, {len(state)} tensors, {n:,} values")
    return {"model": model_name, "kwargs": kwargs, "source": source, "num_classes": NUM_CLASSES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/weights/fixtures")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument(
        "--names",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(re)write <source>_weight_names.json",
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wanted = set(filter(None, args.only.split(",")))
    index_path = os.path.join(args.out, "cases.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    for name, (build, model_name, kwargs, source) in cases().items():
        if wanted and name not in wanted:
            continue
        index[name] = write_case(name, build, model_name, kwargs, source, args.out)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    if args.names:
        write_weight_names(args.out)


if __name__ == "__main__":
    main()
