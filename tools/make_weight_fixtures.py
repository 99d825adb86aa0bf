"""Writes the weight-conversion parity fixtures of tests/weights/fixtures/ (CLI for every case).

The reference frameworks are too heavy for CI, so CI compares against what this wrote. Two
environments, one command each (``--only`` takes case names or globs; ``--layouts`` also rewrites
those frameworks' entries of ``full_layouts.json.gz``)::

    # timm / torchvision cases (torch 2.14.1, torchvision 0.29.1, timm 1.0.31, safetensors):
    "$REF_PYTHON" tools/make_weight_fixtures.py --only='timm_*,torchvision_*' --layouts
    # keras.applications cases (the project's environment: keras 3.15 on the JAX backend):
    KERAS_BACKEND=jax python tools/make_weight_fixtures.py --only='keras_*' --layouts

(Without ``--only`` every case is written, which needs one environment with all of them.)

This file holds the torch sources (timm, torchvision) and their synthetic cases; the Keras cases
are in tools/make_keras_fixtures.py; the policy both follow (inputs, random weights, BatchNorm
statistics calibrated on the fixture's own input then perturbed, float16-exact values, synthetic
weights, the writers) in tools/fixture_common.py.

For each torch case a reference model is built with random weights, shrunk (channel/depth
multipliers, narrower stages, 10 classes, 48x48 input) to keep the fixtures small while still
exercising every block type, squeeze-excite, padding convention and head, and run in eval mode on
a fixed batch. Written per case: ``<case>.safetensors`` (the state dict as the source framework
names it, float16) and ``<case>.npz`` (``input`` NHWC, ``logits``), plus its ``cases.json`` entry
(our model and constructor arguments). Inception-v3 cannot be shrunk (24M parameters), so its cases
are *synthetic*: only the manifest of names and shapes, the calibrated BatchNorm statistics, input
and logits are stored (fixture_common.synthetic_weights rebuilds the rest).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import fixture_common as common  # noqa: E402
from tools import make_keras_fixtures as keras_fixtures  # noqa: E402

SIZE = 48
NUM_CLASSES = common.NUM_CLASSES
SMALL = {"channel_multiplier": 0.1, "depth_multiplier": 0.34}


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


def _timm_vgg(cfg, batch_norm: bool, hidden: int):
    """timm VGG with a ``hidden``-wide ConvMlp (timm fixes 4096; the modules are timm's own)."""
    import torch
    from timm.layers import ClassifierHead
    from timm.models import vgg

    norm = torch.nn.BatchNorm2d if batch_norm else None
    model = vgg.VGG(cfg, num_classes=NUM_CLASSES, norm_layer=norm)
    model.pre_logits = vgg.ConvMlp(model.num_features, hidden, 7, drop_rate=0.0)
    model.head = ClassifierHead(hidden, NUM_CLASSES, pool_type="avg")
    return model


def _torchvision_vgg(cfg, batch_norm: bool, hidden: int):
    """torchvision VGG (``make_layers(cfg)``) with a ``hidden``-wide classifier of the same
    structure (torchvision fixes 512*7*7 -> 4096 -> 4096)."""
    from torch import nn
    from torchvision.models import vgg

    model = vgg.VGG(vgg.make_layers(cfg, batch_norm=batch_norm), num_classes=NUM_CLASSES)
    c = [v for v in cfg if v != "M"][-1]
    model.classifier = nn.Sequential(
        nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, NUM_CLASSES),
    )  # fmt: skip
    return model


VGG_CFG = [8, "M", 16, 16, "M"]  # Two blocks: 28 px in -> the 7x7 map fc1 sees whole.
VGG_OURS = {"cfg": [[8], [16, 16]], "mlp_hidden": 32}
DENSE = {"growth_rate": 8, "block_config": [2, 2, 2, 2]}


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
    """name -> (reference builder, our model name, our constructor overrides, source[, size])."""
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
            lambda: _timm_efficientnet("mobilenetv2_100", num_classes=NUM_CLASSES, channel_multiplier=0.1),
            "mobilenetv2_100", {"channel_multiplier": 0.1}, "timm",
        ),
        "torchvision_efficientnet_b0": (
            lambda: _torchvision_efficientnet("efficientnet_b0", width_mult=0.1, depth_mult=0.34),
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
        "timm_densenet121": (
            lambda: __import__("timm").models.densenet.DenseNet(num_classes=NUM_CLASSES, **DENSE),
            "densenet121", DENSE, "timm",
        ),
        "torchvision_densenet121": (
            lambda: __import__("torchvision").models.densenet.DenseNet(
                num_init_features=16, num_classes=NUM_CLASSES, **DENSE),
            "densenet121", DENSE, "torchvision",
        ),
        "timm_vgg11": (
            lambda: _timm_vgg(VGG_CFG, False, 32), "vgg11", VGG_OURS, "timm", 28,
        ),
        "timm_vgg11_bn": (
            lambda: _timm_vgg(VGG_CFG, True, 32), "vgg11_bn", VGG_OURS, "timm", 28,
        ),
        "torchvision_vgg11": (
            lambda: _torchvision_vgg(VGG_CFG, False, 32), "vgg11", VGG_OURS, "torchvision", 28,
        ),
        "torchvision_vgg11_bn": (
            lambda: _torchvision_vgg(VGG_CFG, True, 32), "vgg11_bn", VGG_OURS, "torchvision", 28,
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


def synthetic_cases():
    """Inception-v3 from timm and torchvision (same names; torchvision keeps AuxLogits, which our
    model deliberately leaves unused): name -> (builder, our model, kwargs, source, ignored)."""

    def timm_inception():
        import timm

        return timm.create_model("inception_v3", num_classes=NUM_CLASSES)

    def tv_inception():
        from torchvision.models import inception

        return inception.Inception3(num_classes=NUM_CLASSES, aux_logits=True, init_weights=False)

    return {
        "timm_inception_v3": (timm_inception, "inception_v3", {}, "timm", []),
        "torchvision_inception_v3": (
            tv_inception, "inception_v3", {}, "torchvision", ["AuxLogits.*"],
        ),
    }  # fmt: skip


# ------------------------------------------------------------------------------- weight policy
def _batchnorms(model):
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def randomise_affine(model, rng: np.random.Generator) -> None:
    """BatchNorm weight/bias by fixture_common.affine (torch initialises them to ones/zeros)."""
    import torch

    with torch.no_grad():
        for m in _batchnorms(model):
            scale, shift = common.affine(m.num_features, rng)
            m.weight.copy_(torch.from_numpy(scale))
            m.bias.copy_(torch.from_numpy(shift))


def calibrate(model, x, rng: np.random.Generator) -> None:
    """Running statistics of the batch's activations (one pass with only the BatchNorm layers in
    training mode, momentum 1), then perturbed (fixture_common.perturb_statistics)."""
    import torch

    bns = _batchnorms(model)
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.train()
        m.momentum = 1.0
    with torch.no_grad():
        model(x)
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
            mean, var = common.perturb_statistics(m.running_mean, m.running_var, rng)
            m.running_mean.copy_(torch.from_numpy(mean))
            m.running_var.copy_(torch.from_numpy(var))
    model.eval()


def _run(model, x: np.ndarray) -> np.ndarray:
    """Calibrates ``model`` on ``x`` (NHWC), rounds it to float16-exact values, returns logits."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    calibrate(model, xt, np.random.default_rng(3))
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
        return model(xt).numpy()


def write_case(name, build, model_name, kwargs, source, out, size=SIZE) -> dict:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build()
    randomise_affine(model, np.random.default_rng(1))
    x = common.float_input((common.BATCH, size, size, 3))
    logits = _run(model, x)
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, os.path.join(out, f"{name}.safetensors"))
    common.save_case(out, name, x, logits)
    n = sum(v.numel() for v in state.values())
    print(f"{name}: {type(model).__name__}, {len(state)} tensors, {n:,} values")
    return common.case_entry(model_name, kwargs, source)


def write_synthetic_case(name, build, model_name, kwargs, source, ignored, out, size=75) -> dict:
    """A torch reference loaded with fixture_common.synthetic_weights, BatchNorm statistics
    calibrated; stores manifest, statistics, input, logits. ``ignored``: globs of the reference's
    tensors our model deliberately leaves unused."""
    import torch

    model = build()
    state = model.state_dict()
    manifest = {k: list(v.shape) for k, v in state.items() if v.is_floating_point()}
    weights = common.synthetic_weights(manifest, "torch")
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in weights.items()}, strict=False
    )
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), missing
    x = common.float_input((common.BATCH, size, size, 3))  # >1 value per channel at 1x1.
    logits = _run(model, x)
    state = {k: v.numpy() for k, v in model.state_dict().items() if k in manifest}
    common.save_case(out, name, x, logits, manifest, common.pack_statistics(state))
    print(f"{name}: {type(model).__name__}, {len(manifest)} tensors (synthetic)")
    extra = {"weights": "synthetic", "layout": "torch", "ignored": ignored}
    return common.case_entry(model_name, kwargs, source, **extra)


# ------------------------------------------------------------------ full-size layouts (no weights)
# Reference models whose state-dict names and shapes full_layouts.json.gz records (our model of
# the same name must take them one to one), at full depth without torch in the tests.
FULL_SIZE = {
    "timm": (
        "resnet18", "resnet152", "resnetv2_50", "resnetv2_152", "densenet121", "densenet169",
        "densenet201", "vgg11", "vgg16", "vgg19_bn", "inception_v3", "efficientnet_b0",
        "tf_efficientnet_b7", "efficientnet_lite0", "mobilenetv2_100", "tf_efficientnetv2_s",
    ),
    "torchvision": (
        "resnet34", "resnet50", "densenet121", "densenet201", "vgg16", "vgg13_bn", "inception_v3",
        "efficientnet_b0", "efficientnet_b7", "mobilenet_v2", "efficientnet_v2_s",
    ),
}  # fmt: skip


def full_layouts(source: str) -> dict[str, dict[str, list[int]]]:
    import timm
    from torchvision import models as tvm

    def build(name):
        if source == "timm":
            return timm.create_model(name, pretrained=False)
        kw = {"init_weights": False} if name == "inception_v3" else {}
        return getattr(tvm, name)(weights=None, **kw)

    return {
        name: {k: list(v.shape) for k, v in build(name).state_dict().items()}
        for name in FULL_SIZE[source]
    }


# -------------------------------------------------------------------------------------- the CLI
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/weights/fixtures")
    parser.add_argument("--only", default="", help="comma-separated case names or globs")
    parser.add_argument(
        "--layouts", action="store_true", help=f"rewrite the frameworks' {common.FULL_LAYOUTS}"
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    only = list(filter(None, args.only.split(",")))
    writers = [  # (framework, case name, write() -> its cases.json entry)
        *(("torch", n, lambda n=n, c=c: write_case(n, *c[:4], args.out, *c[4:]))
          for n, c in cases().items()),
        *(("torch", n, lambda n=n, c=c: write_synthetic_case(n, *c, out=args.out))
          for n, c in synthetic_cases().items()),
        *(("keras", n, lambda n=n, c=c: keras_fixtures.write_case(n, c, args.out))
          for n, c in keras_fixtures.CASES.items()),
    ]  # fmt: skip
    frameworks = set()
    for framework, name, write in writers:
        if common.selected(name, only):  # cases.json after each case: a failed run keeps the rest.
            common.update_index(args.out, {name: write()})
            frameworks.add(framework)
    if args.layouts and "torch" in frameworks:
        for source in FULL_SIZE:
            common.update_full_layouts(args.out, source, full_layouts(source))
    if args.layouts and "keras" in frameworks:
        common.update_full_layouts(args.out, "keras", keras_fixtures.full_layouts())


if __name__ == "__main__":
    main()
