"""The PyTorch rebuild of the scratch CNNs (jaxcls.benchmark.torch_cnn) is the same network:
same parameters, and with our weights copied in, the same logits (the torch of the dev install)."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from jaxcls import models
from jaxcls.benchmark import torch_cnn
from jaxcls.models import cnn, summary
from jaxcls.models.registry import HEAD_HIDDEN


def build(spec):
    scope = {}
    exec(torch_cnn.BUILD_SCRIPT, scope)  # noqa: S102 - our own source, as the reference runs it
    return scope["build_cnn"](spec)


def ours_in_order(model):
    """Our conv, BatchNorm and dense layers in the order the torch Sequential has them."""
    out = []
    for block in [model.stem, *(b for stage in model.stages for b in stage)]:
        out += [block.conv] + ([block.bn] if block.bn is not None else [])
    return out + list(getattr(model, HEAD_HIDDEN).dense) + [model.head]


def copy_weights(model, net):
    """Ours into torch's (conv kernels HWIO -> OIHW, dense (in, out) -> (out, in))."""
    theirs = [
        m for m in net if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d | torch.nn.Linear)
    ]
    mine = ours_in_order(model)
    assert len(theirs) == len(mine)

    def t(a):
        return torch.from_numpy(np.array(a, dtype=np.float32))

    with torch.no_grad():
        for a, b in zip(mine, theirs, strict=True):
            if isinstance(b, torch.nn.BatchNorm2d):
                for name, value in (("weight", a.scale), ("bias", a.bias)):
                    getattr(b, name).copy_(t(value[...]))
                b.running_mean.copy_(t(a.mean[...]))
                b.running_var.copy_(t(a.var[...]))
                continue
            kernel = np.asarray(a.kernel[...])
            b.weight.copy_(t(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T))
            if a.bias is not None:
                b.bias.copy_(t(a.bias[...]))


def randomise_statistics(model, seed):
    """Running statistics away from 0 and 1, so a swapped mean/var would show."""
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_modules(model):
        if isinstance(bn, models.layers.BatchNorm):
            n = bn.mean.shape[0]
            bn.mean.set_value(jax.numpy.asarray(rng.normal(0, 0.5, n), jax.numpy.float32))
            bn.var.set_value(jax.numpy.asarray(rng.uniform(0.5, 2.0, n), jax.numpy.float32))
            bn.bias.set_value(jax.numpy.asarray(rng.normal(0, 0.2, n), jax.numpy.float32))


CASES = {  # name -> (registry name or CNN kwargs, image side)
    "cnn": ("cnn", 32),
    "cnn_small": ("cnn_small", 32),
    "cnn_conv4invto128": ("cnn_conv4invto128", 128),
    # Every other option: two convs per block, valid padding, conv bias, BatchNorm after the
    # activation, average pooling, GELU, global max pooling, two hidden layers (few distinct
    # shapes: each compiles its own random initialiser).
    "custom": (
        dict(
            filters=(8, 8),
            convs_per_block=2,
            padding="valid",
            conv_bias=True,
            bn_after_act=True,
            pool="avg",
            act="gelu",
            global_pool="max",
            dense=(8, 8),
            dropout=0.3,
        ),
        30,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_rebuild_has_our_parameters_and_logits(case):
    what, side = CASES[case]
    if isinstance(what, str):
        kwargs = {"input_size": side} if what == "cnn_conv4invto128" else {}
        model = models.create(what, num_classes=7, rngs=nnx.Rngs(0), **kwargs)
    else:
        model = cnn.CNN(num_classes=7, rngs=nnx.Rngs(0), **what)
    randomise_statistics(model, 1)
    net = build(torch_cnn.spec(model))
    params = nnx.state(model, nnx.Param)
    ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert sum(p.numel() for p in net.parameters()) == ours
    copy_weights(model, net)
    x = np.random.default_rng(2).normal(size=(3, side, side, 3)).astype(np.float32)
    logits = np.asarray(nnx.jit(lambda m, x: m(x, train=False)[0])(model, x))
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert logits.shape == theirs.shape == (3, 7)
    np.testing.assert_allclose(theirs, logits, rtol=1e-4, atol=1e-4)


def test_parts_torch_cannot_rebuild_are_named():
    # Abstract models (shapes only), as tools/compare.py reads them.
    model = nnx.eval_shape(lambda: cnn.CNN(num_classes=3, padding="same_tf", rngs=nnx.Rngs(0)))
    with pytest.raises(torch_cnn.Unsupported, match="padding 'same_tf'"):
        torch_cnn.spec(model)
    with pytest.raises(torch_cnn.Unsupported, match="ResNet is not a scratch CNN"):
        torch_cnn.spec(summary.abstract_model("resnet18", num_classes=3))
    spec = torch_cnn.spec(summary.abstract_model("cnn_small"))
    assert [layer.get("cout") for layer in spec["layers"]] == [16, None, 32, None, 64, None]
