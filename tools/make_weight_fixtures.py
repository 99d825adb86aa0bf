"""Writes the golden parity fixtures of tests/weights/fixtures/ from the reference frameworks.

Run in an environment with torch, timm and torchvision (they are too heavy for CI, so CI compares
against what this script wrote)::

    python -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch==2.14.1 \
        torchvision==0.29.1 timm==1.0.31 safetensors
    /work/venv-ref/bin/python tools/make_weight_fixtures.py --out tests/weights/fixtures \
        --only=timm_efficientnet_b0,...

For each case a reference model is built with random weights (BatchNorm affine parameters and
running statistics randomised too, so a mix-up of scale/bias/mean/var shows), put in eval mode
and run on a fixed random batch. Written per case: ``<case>.safetensors`` (the state dict as the
source framework names it, float16) and ``<case>.npz`` (``input`` NHWC float32, ``logits``), plus
``cases.json`` saying which of our models and constructor arguments each case converts into.
Models are shrunk (channel/depth multipliers, 10 classes, 48x48 input) to keep the fixtures
small (weights rounded to float16-exact values and stored as float16; the reference runs in
float32) while still exercising every block type, squeeze-excite, padding convention and head.

The ``keras*`` cases are written by tools/make_keras_fixtures.py (see its docstring for their
files), in an environment with keras 3.15 and jax (the project's own)::

    KERAS_BACKEND=jax python tools/make_weight_fixtures.py --only=keras_mobilenetv2,...

Without ``--only`` every case is written, which needs both environments' packages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import make_keras_fixtures  # noqa: E402

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


def _timm_efficientnetv2_s(variant: str, **kw):
    from timm.models import efficientnet as e

    return e._gen_efficientnetv2_s(variant, **kw)


def _torchvision_efficientnet(arch: str, **kw):
    from torchvision.models import efficientnet as tv

    setting, last = tv._efficientnet_conf(
        arch, width_mult=kw["width_mult"], depth_mult=kw["depth_mult"]
    )
    return tv.EfficientNet(setting, dropout=0.2, last_channel=last, num_classes=NUM_CLASSES)


def _torchvision_mobilenet_v2(width_mult: float):
    from torchvision.models import mobilenetv2

    return mobilenetv2.MobileNetV2(num_classes=NUM_CLASSES, width_mult=width_mult)


def _torchvision_efficientnet_v2_s(width: float, depth: float):
    """torchvision's EfficientNetV2-S with its stages' channels and repeats scaled as our (and
    timm's) multipliers scale them (torchvision's V2 configs take no multipliers): channels by
    ``_make_divisible(c * width, 8)``, repeats by ``ceil(n * depth)``; BatchNorm eps 1e-3 as in
    ``efficientnet_v2_s``."""
    import dataclasses
    import functools
    import math

    import torch
    from torchvision.models import efficientnet as tv

    setting, last = tv._efficientnet_conf("efficientnet_v2_s")
    scaled = [
        dataclasses.replace(
            cfg,
            input_channels=tv._make_divisible(cfg.input_channels * width, 8),
            out_channels=tv._make_divisible(cfg.out_channels * width, 8),
            num_layers=math.ceil(cfg.num_layers * depth),
        )
        for cfg in setting
    ]
    return tv.EfficientNet(
        scaled,
        dropout=0.2,
        num_classes=NUM_CLASSES,
        norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3),
        last_channel=tv._make_divisible(last * width, 8),
    )


def cases():
    """name -> (reference builder, our model name, our constructor overrides, source)."""
    tf = {"bn_eps": 1e-3, "pad_type": "same"}
    v2 = {"channel_multiplier": 0.1, "depth_multiplier": 0.25}
    # torchvision efficientnet_v2_* rows: symmetric padding, eps 1e-3 (registry_data).
    tv_v2 = {**v2, "padding": "symmetric", "bn_eps": 1e-3, "bn_momentum": 0.9}
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
        "torchvision_mobilenet_v2": (
            lambda: _torchvision_mobilenet_v2(0.1),
            "mobilenetv2_100", {"channel_multiplier": 0.1}, "torchvision",
        ),
        "torchvision_efficientnet_v2_s": (
            lambda: _torchvision_efficientnet_v2_s(0.1, 0.25),
            "tf_efficientnetv2_s", tv_v2, "torchvision",
        ),
        "timm_tf_efficientnetv2_s": (
            lambda: _timm_efficientnetv2_s("tf_efficientnetv2_s", num_classes=NUM_CLASSES, **v2, **tf),
            "tf_efficientnetv2_s", v2, "timm",
        ),
    }  # fmt: skip


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


# Cases whose BatchNorm running statistics are calibrated on the input (calibrate_batchnorm); the
# older cases keep randomise_batchnorm's arbitrary statistics, under which a thin random
# network's activations can die out so that its logits hardly depend on the input.
CALIBRATED = {
    "torchvision_mobilenet_v2",
    "torchvision_efficientnet_v2_s",
    "timm_tf_efficientnetv2_s",
}


def calibrate_batchnorm(model, x, generator) -> None:
    """Running statistics of the batch's activations (one pass with only the BatchNorm layers in
    training mode, momentum 1), then perturbed: mean +- 0.1 std, variance x 0.7..1.3, so that a
    mean/variance mix-up still shows while every layer keeps unit-scale activations."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.train()
        m.momentum = 1.0
    with torch.no_grad():
        model(x)
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
            n, std = m.num_features, m.running_var.sqrt()
            m.running_mean.add_(torch.randn(n, generator=generator) * 0.1 * std)
            m.running_var.mul_(torch.rand(n, generator=generator) * 0.6 + 0.7)
    model.eval()


def write_case(name: str, build, model_name: str, kwargs: dict, source: str, out: str) -> dict:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build()
    randomise_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    if name in CALIBRATED:
        calibrate_batchnorm(model, x, torch.Generator().manual_seed(3))
    with torch.no_grad():  # fp16-exact values: stored as float16 at half the size, no loss.
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    model.eval()
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
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wanted = set(filter(None, args.only.split(",")))
    index_path = os.path.join(args.out, "cases.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    keras_cases = set(make_keras_fixtures.cases())
    unknown = wanted - set(cases()) - keras_cases
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {sorted({*cases(), *keras_cases})}")
    for name, (build, model_name, kwargs, source) in cases().items():
        if wanted and name not in wanted:
            continue
        index[name] = write_case(name, build, model_name, kwargs, source, args.out)
    if not wanted or wanted & keras_cases:
        make_keras_fixtures.write(args.out, wanted & keras_cases, index)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
