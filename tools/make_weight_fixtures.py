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

The Keras cases (legacy ``.h5`` and Keras 3 ``.weights.h5`` files) come from the sibling
tools/make_keras_fixtures.py, run with Keras on the JAX backend.
Keras cases (run with ``KERAS_BACKEND=torch``) write ``<case>.h5`` in the legacy layout of the
published keras.applications files (root ``layer_names``, per-layer ``weight_names``; Keras'
``legacy_h5_format``), float16 datasets. Keras widths cannot be changed through arguments: DenseNet
is shrunk through ``blocks``, VGG16 through a wrapper that divides the widths its own source asks
for (the names, layer order and NHWC flattening stay Keras'); VGG needs its full 224x224 input for
the 7x7 map its ``fc1`` flattens.

Inception-v3 cannot be shrunk on either side (24M parameters, ~48 MB as float16), so its cases are
*synthetic*: every tensor is a deterministic function of its name and shape
(:func:`synthetic_weights`, pure numpy, identical in CI), loaded into the reference, and only the
manifest (names and shapes as our reader sees them), input and logits are stored (``.npz``).
The ``keras*`` cases are written by tools/make_keras_fixtures.py (see its docstring for their
files), in an environment with keras 3.15 and jax (the project's own)::

    KERAS_BACKEND=jax python tools/make_weight_fixtures.py --only=keras_mobilenetv2,...

Without ``--only`` every case is written, which needs both environments' packages.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import make_keras_fixtures_efficientnet as make_keras_fixtures  # noqa: E402

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


def write_case(
    name: str, build, model_name: str, kwargs: dict, source: str, out: str, size: int = SIZE
) -> dict:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build()
    randomise_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(2))
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


# ------------------------------------------------- synthetic weights (deterministic, pure numpy)
def _uniform(name: str, n: int) -> np.ndarray:
    """``n`` float64 values in [0, 1) from PCG64's raw output, seeded with CRC-32(name)."""
    raw = np.random.PCG64(zlib.crc32(name.encode())).random_raw(n)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def synthetic_tensor(name: str, shape, layout: str) -> np.ndarray:
    """A float16-exact float32 tensor that depends only on ``name``, ``shape`` and ``layout``.

    The values come from the raw 64-bit output of numpy's PCG64 seeded with the CRC-32 of the name
    (both fixed by their specifications, so every numpy version gives the same tensor). Kernels
    (>= 2-D) are He-uniform for their fan-in (``layout`` 'torch': (out, in, ...); 'keras':
    (..., in, out)); BatchNorm scales and variances lie in [0.5, 1.5); biases and means in
    [-0.2, 0.2).
    """
    shape = tuple(int(d) for d in shape)
    u = _uniform(name, math.prod(shape))
    leaf = name.rsplit("/" if layout == "keras" else ".", 1)[-1]
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:]) if layout == "torch" else math.prod(shape[:-1])
        hi = math.sqrt(6.0 / fan_in)
        lo = -hi
    elif leaf in ("weight", "running_var", "gamma", "moving_variance"):
        lo, hi = 0.5, 1.5
    else:
        lo, hi = -0.2, 0.2
    return (lo + (hi - lo) * u).astype(np.float16).astype(np.float32).reshape(shape)


def synthetic_weights(manifest: dict, layout: str) -> dict[str, np.ndarray]:
    """``{name: synthetic_tensor(name, shape, layout)}`` for a ``{name: shape}`` manifest."""
    return {name: synthetic_tensor(name, shape, layout) for name, shape in manifest.items()}


def _synthetic_input(shape, scale: float = 1.0) -> np.ndarray:
    """Uniform input of unit variance times ``scale``, float16-exact float32 (NHWC)."""
    u = _uniform("input", math.prod(shape)).reshape(shape)
    return (scale * math.sqrt(3.0) * (2 * u - 1)).astype(np.float16).astype(np.float32)


def write_torch_synthetic_case(
    name, build, model_name, kwargs, source, ignored, out, size=75
) -> dict:
    """A torch reference loaded with :func:`synthetic_weights`; stores manifest, input, logits.
    ``ignored``: globs of the reference's tensors our model deliberately leaves unused."""
    import torch

    model = build()
    state = model.state_dict()
    manifest = {k: list(v.shape) for k, v in state.items() if v.is_floating_point()}
    weights = synthetic_weights(manifest, "torch")
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in weights.items()}, strict=False
    )
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), missing
    model.eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(x).numpy()
    _save_synthetic(out, name, x.numpy().transpose(0, 2, 3, 1), logits, manifest)
    print(
        f"{name}: {type(model).__name__}, {len(manifest)} tensors (synthetic), logits {logits.shape}"
    )
    return {"model": model_name, "kwargs": kwargs, "source": source, "num_classes": NUM_CLASSES,
            "weights": "synthetic", "layout": "torch", **({"ignored": ignored} if ignored else {})}  # fmt: skip


def _save_synthetic(out, name, x, logits, manifest) -> None:
    np.savez_compressed(
        os.path.join(out, f"{name}.npz"),
        input=x.astype(np.float32),
        logits=logits,
        manifest=np.array(json.dumps(manifest)),
    )


# --------------------------------------------------------------------------------- Keras cases
KERAS_VGG_DIV = 16  # Keras VGG16 widths / 16: 4-8-16-32-32.
KERAS_VGG_OURS = {"cfg": [[4, 4], [8, 8], [16, 16, 16], [32, 32, 32], [32, 32, 32]],
                  "mlp_hidden": 32}  # fmt: skip
KERAS_DENSE_OURS = {"block_config": [1, 1, 1, 1], "bn_eps": 1.001e-5}


def _keras_vgg16():
    """keras.applications VGG16 as its own source builds it, with every width divided."""
    from keras.src import layers as real
    from keras.src.applications import vgg16

    class Shrunk:
        def __getattr__(self, attr):
            return getattr(real, attr)

        @staticmethod
        def Conv2D(filters, *a, **k):  # noqa: N802 (Keras' name)
            return real.Conv2D(filters // KERAS_VGG_DIV, *a, **k)

        @staticmethod
        def Dense(units, *a, **k):  # noqa: N802
            return real.Dense(KERAS_VGG_OURS["mlp_hidden"] if units == 4096 else units, *a, **k)

    saved, vgg16.layers = vgg16.layers, Shrunk()
    try:
        return vgg16.VGG16(weights=None, input_shape=(224, 224, 3), classes=NUM_CLASSES,
                           classifier_activation=None)  # fmt: skip
    finally:
        vgg16.layers = saved


def _keras_densenet():
    from keras.src.applications import densenet

    return densenet.DenseNet(blocks=KERAS_DENSE_OURS["block_config"], weights=None,
                             input_shape=(32, 32, 3), classes=NUM_CLASSES,
                             classifier_activation=None)  # fmt: skip


def _keras_inception_v3():
    import keras

    return keras.applications.InceptionV3(weights=None, input_shape=(75, 75, 3),
                                          classes=NUM_CLASSES, classifier_activation=None)  # fmt: skip


def keras_cases():
    """name -> (builder, our model, kwargs, input size, input scale, BGR, stored as .h5)."""
    return {
        "keras_densenet121": (_keras_densenet, "DenseNet121", KERAS_DENSE_OURS, 32, 1.0, False, True),
        "keras_vgg16": (_keras_vgg16, "VGG16", KERAS_VGG_OURS, 224, 60.0, True, True),
        "keras_inception_v3": (_keras_inception_v3, "InceptionV3", {}, 75, 1.0, False, False),
    }  # fmt: skip


def _legacy_datasets(f):
    """(reader name, layer group, weight name) of every dataset of a legacy Keras .h5 file."""
    for layer in (n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]):
        g = f[layer]
        for wn in (n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]):
            key = wn[:-2] if wn.endswith(":0") else wn
            yield (key if key.startswith(f"{layer}/") else f"{layer}/{key}"), g, wn


def _rewrite_float16(path: str) -> None:
    """Rewrites a legacy Keras .h5 (attributes, groups, weight_names) with float16 datasets (a
    fresh file: HDF5 does not reclaim the space of deleted datasets)."""
    import h5py

    tmp = path + ".tmp"
    with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs.update(dict(src.attrs))
        for layer in src.attrs["layer_names"]:  # Every listed layer has a group, weights or not.
            layer = layer.decode() if isinstance(layer, bytes) else layer
            dst.create_group(layer).attrs.update(dict(src[layer].attrs))
        for _, g, wn in _legacy_datasets(src):
            dst[g.name].create_dataset(wn, data=g[wn][()].astype(np.float16))
    os.replace(tmp, path)


def write_keras_case(name, build, model_name, kwargs, size, scale, bgr, stored, out) -> dict:
    """A keras.applications model saved in the legacy .h5 layout, loaded with synthetic weights
    (names as our reader gives them) and run on ``input`` (the reference gets it reversed to BGR
    for caffe-mode models: the converted model takes RGB)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from jaxcls.weights.readers import read_weights

    keras.utils.clear_session()  # Auto-numbered layer names start from zero (conv2d, conv2d_1).
    model = build()
    path = os.path.join(out, f"{name}.h5") if stored else tempfile.mktemp(suffix=".h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    manifest = {k: list(v.shape) for k, v in read_weights(path).items()}
    weights = synthetic_weights(manifest, "keras")
    with h5py.File(path, "r+") as f:
        for key, g, wn in list(_legacy_datasets(f)):
            g[wn][...] = weights[key]
        legacy_h5_format.load_weights_from_hdf5_group(f, model)
    x = _synthetic_input((1, size, size, 3), scale)
    ref_in = x[..., ::-1] if bgr else x
    logits = keras.ops.convert_to_numpy(model(ref_in, training=False))
    if stored:  # float16-exact values: float16 datasets at half the size, same layout.
        _rewrite_float16(path)
        np.savez_compressed(
            os.path.join(out, f"{name}.npz"), input=x.astype(np.float16), logits=logits
        )
    else:
        os.remove(path)
        _save_synthetic(out, name, x, logits, manifest)
    print(f"{name}: keras {model.name}, {len(manifest)} tensors, logits {logits.shape}")
    spec = {"model": model_name, "kwargs": kwargs, "source": "keras", "num_classes": NUM_CLASSES}
    if stored:
        spec["file"] = f"{name}.h5"
    else:
        spec.update(weights="synthetic", layout="keras")
    return spec


def torch_synthetic_cases():
    """Inception-v3 from timm and torchvision (same names; torchvision keeps AuxLogits)."""

    def timm_inception():
        import timm

        return timm.create_model("inception_v3", num_classes=NUM_CLASSES)

    def tv_inception():
        from torchvision.models import inception

        return inception.Inception3(num_classes=NUM_CLASSES, aux_logits=True, init_weights=False)

    return {
        "timm_inception_v3": (timm_inception, "inception_v3", {}, "timm", []),
        "torchvision_inception_v3": (
            tv_inception,
            "inception_v3",
            {},
            "torchvision",
            ["AuxLogits.*"],
        ),
    }


# ------------------------------------------------------------------ full-size layouts (no weights)
FULL_LAYOUTS = "full_layouts.json.gz"


def write_full_layouts(out: str) -> None:
    """``{"<source>:<reference model>": {tensor name: shape}}`` of full-size reference models
    (names as our reader gives them), for the test that every map covers the real layouts."""
    import gzip

    import h5py
    import keras
    import timm
    from keras.src.legacy.saving import legacy_h5_format
    from torchvision import models as tvm

    from jaxcls.weights.readers import read_weights

    def torch_names(model):
        return {k: list(v.shape) for k, v in model.state_dict().items()}

    layouts = {}
    for n in ("densenet121", "densenet169", "densenet201", "vgg11", "vgg16", "vgg19_bn",
              "inception_v3"):  # fmt: skip
        layouts[f"timm:{n}"] = torch_names(timm.create_model(n, pretrained=False))
    for n in ("densenet121", "densenet201", "vgg16", "vgg13_bn", "inception_v3"):
        kw = {"init_weights": False} if n == "inception_v3" else {}
        layouts[f"torchvision:{n}"] = torch_names(getattr(tvm, n)(weights=None, **kw))
    for n in ("DenseNet121", "DenseNet169", "DenseNet201", "VGG16", "VGG19", "InceptionV3"):
        keras.utils.clear_session()
        model = getattr(keras.applications, n)(weights=None)
        path = tempfile.mktemp(suffix=".h5")
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        layouts[f"keras:{n}"] = {k: list(v.shape) for k, v in read_weights(path).items()}
        os.remove(path)
    with gzip.open(os.path.join(out, FULL_LAYOUTS), "wt") as f:
        json.dump(layouts, f, sort_keys=True)
    print(f"{FULL_LAYOUTS}: {len(layouts)} reference layouts")


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
    parser.add_argument("--layouts", action="store_true", help=f"also write {FULL_LAYOUTS}")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wanted = set(filter(None, args.only.split(",")))
    index_path = os.path.join(args.out, "cases.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    for name, (build, model_name, kwargs, source, *size) in cases().items():
        if not wanted or name in wanted:
            index[name] = write_case(name, build, model_name, kwargs, source, args.out, *size)
    for name, case in torch_synthetic_cases().items():
        if not wanted or name in wanted:
            index[name] = write_torch_synthetic_case(name, *case, out=args.out)
    for name, args_ in keras_cases().items():
        if not wanted or name in wanted:
            index[name] = write_keras_case(name, *args_, out=args.out)
    if args.layouts:
        write_full_layouts(args.out)
    effnet_keras = set(make_keras_fixtures.cases())
    if not wanted or wanted & effnet_keras:
        make_keras_fixtures.write(args.out, wanted & effnet_keras, index)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    if args.names:
        write_weight_names(args.out)


if __name__ == "__main__":
    main()
