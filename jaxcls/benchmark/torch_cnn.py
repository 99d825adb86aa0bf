"""The scratch CNNs of the zoo (`jaxcls.models.cnn`) rebuilt in PyTorch, layer for layer, so
``tools/compare.py --torch_python=PY`` measures them against PyTorch the way timm's models are
measured for the other families (timm has no such model).

`spec` reads a built (or abstract) jaxcls CNN into plain data; `BUILD_SCRIPT` is the PyTorch
source that builds the same network from it (``build_cnn(spec)``). It runs in the reference
Python, where jaxcls is not installed, so it is source text; the tests run it with the torch of
the dev install and check the two networks give the same logits from the same weights.
"""

from __future__ import annotations

from jaxcls.models import cnn, heads
from jaxcls.models.registry import HEAD_HIDDEN

# jaxcls activation name -> the torch.nn module doing the same, and its arguments (jax.nn.gelu is
# the tanh form; jax.nn.leaky_relu's slope is 0.01, as torch's).
TORCH_ACTS = {
    "relu": ("ReLU", {}),
    "relu6": ("ReLU6", {}),
    "silu": ("SiLU", {}),
    "swish": ("SiLU", {}),
    "gelu": ("GELU", {"approximate": "tanh"}),
    "elu": ("ELU", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": 0.01}),
    "tanh": ("Tanh", {}),
    "sigmoid": ("Sigmoid", {}),
    "hard_sigmoid": ("Hardsigmoid", {}),
    "hard_swish": ("Hardswish", {}),
    "identity": ("Identity", {}),
}
PADDINGS = ("symmetric", "valid")  # what torch's static padding can do at stride 1

BUILD_SCRIPT = r'''
import torch

def build_cnn(spec):
    """jaxcls's scratch CNN as a torch.nn.Sequential of the same layers, in the same order."""
    nn = torch.nn
    def act():
        name, kwargs = spec["act"]
        return getattr(nn, name)(**kwargs)
    class NHWCFlatten(nn.Module):  # jaxcls flattens [B, H, W, C]: the same order of features
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)
    out = []
    for layer in spec["layers"]:
        if layer["kind"] == "pool":
            out.append(nn.MaxPool2d(2) if layer["pool"] == "max" else nn.AvgPool2d(2))
            continue
        kh, kw = layer["kernel"]
        conv = nn.Conv2d(layer["cin"], layer["cout"], (kh, kw), padding=layer["pad"],
                         bias=layer["bias"])
        bn = [nn.BatchNorm2d(layer["cout"], eps=layer["eps"])] if layer["bn"] else []
        out += [conv, act(), *bn] if layer["bn_after_act"] else [conv, *bn, act()]
    pool = spec["head_pool"]
    out += {"avg": [nn.AdaptiveAvgPool2d(1), nn.Flatten()],
            "max": [nn.AdaptiveMaxPool2d(1), nn.Flatten()],
            "flatten": [NHWCFlatten()]}[pool]
    width = spec["pooled"]
    for w in spec["hidden"]:
        out += [nn.Linear(width, w), act(), nn.Dropout(spec["head_dropout"])]
        width = w
    out += [nn.Dropout(spec["drop_rate"]), nn.Linear(width, spec["num_classes"])]
    return nn.Sequential(*out)
'''


class Unsupported(ValueError):
    """The model has a part the PyTorch rebuild does not do (said in the message)."""


def is_cnn(model) -> bool:
    return isinstance(model, cnn.CNN)


def _conv(block: cnn.ConvBNAct) -> dict:
    conv = block.conv
    if conv.stride != 1 or conv.dilation != 1 or conv.groups != 1:
        raise Unsupported("strided, dilated or grouped convolutions")
    if conv.padding not in PADDINGS:
        raise Unsupported(f"padding {conv.padding!r} (it does {', '.join(PADDINGS)})")
    kh, kw, cin, cout = conv.kernel.shape
    # layers.get_padding's 'symmetric' at stride 1: (k - 1) // 2 on each side.
    pad = [(kh - 1) // 2, (kw - 1) // 2] if conv.padding == "symmetric" else [0, 0]
    if conv.padding == "symmetric" and (kh % 2 == 0 or kw % 2 == 0):
        raise Unsupported("even kernels with symmetric padding")
    bn = block.bn
    if bn is not None and (bn.scale is None or bn.bias is None):
        raise Unsupported("BatchNorm without its scale or offset")
    return {
        "kind": "conv",
        "kernel": [kh, kw],
        "cin": cin,
        "cout": cout,
        "pad": pad,
        "bias": conv.bias is not None,
        "bn": bn is not None,
        "bn_after_act": bool(block.bn_after_act),
        "eps": float(bn.epsilon) if bn is not None else 0.0,
    }


def spec(model: cnn.CNN) -> dict:
    """The network as data for ``build_cnn`` (`BUILD_SCRIPT`); `Unsupported` for a part it
    cannot rebuild."""
    if not is_cnn(model):
        raise Unsupported(f"{type(model).__name__} is not a scratch CNN")
    if model.act not in TORCH_ACTS:
        raise Unsupported(f"activation {model.act!r}")
    pool = [{"kind": "pool", "pool": model.pool}] if model.pool else []
    out = [_conv(model.stem)]
    for i, stage in enumerate(model.stages):
        out += (pool if i > 0 else []) + [_conv(block) for block in stage]
    out += pool
    hidden: heads.DenseHead = getattr(model, HEAD_HIDDEN)
    last_conv = [layer for layer in out if layer["kind"] == "conv"][-1]
    pooled = hidden.flat_features if hidden.pool == "flatten" else last_conv["cout"]
    drops = [d.rate for d in hidden.drops]
    return {
        "layers": out,
        "act": TORCH_ACTS[model.act],
        "head_pool": hidden.pool,
        "pooled": int(pooled),
        "hidden": [int(d.out_features) for d in hidden.dense],
        "head_dropout": float(drops[0]) if drops else 0.0,
        "drop_rate": float(model.head_drop.rate),
        "num_classes": int(model.head.out_features),
    }
