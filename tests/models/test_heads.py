"""Classifier heads on every family: hidden dense layers between the pooled features and the
classifier (``head``, ``head_dropout``, ``head_pool``), pretrained weights into the backbone with
the head fresh, and the features contract ('pre_logits' = the last hidden layer's output)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.models import summary
from jaxcls.models.registry import backbone_units
from jaxcls.weights import convert, layout

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights", "fixtures")
NUM_CLASSES = 5
# One model per family, shrunk as the weight fixtures are (inception_v3 cannot be; abstract only).
FAMILIES = {
    "resnet50": (dict(depths=(2, 2, 1, 1), widths=(8, 16, 32, 64)), 64),
    "resnetv2_50": (dict(channels=(32, 64, 128, 256), depths=(2, 2, 1, 1), stem_width=16), 64),
    "efficientnet_b0": (dict(channel_multiplier=0.1, depth_multiplier=0.34), 64),
    "mobilenetv2_100": (dict(channel_multiplier=0.1), 64),
    "densenet121": (dict(block_config=(2, 2, 2, 2), growth_rate=8), 64),
    "vgg11": (dict(cfg=((8,), (16, 16)), mlp_hidden=32), 224),
    "inception_v3": ({}, 96),
    "cnn_small": ({}, 32),
}
HEAD = dict(head=(24, 12), head_dropout=0.3)


def n_params(model) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def head_input(model, size) -> tuple[int, ...]:
    """Shape of the map the head pools (the backbone's output, ``forward_features``)."""
    graphdef, state = nnx.split(model)

    def backbone(state, x):
        return nnx.merge(graphdef, state, copy=True).forward_features(x, train=False)[0]

    return jax.eval_shape(
        backbone, state, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    ).shape


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_takes_a_dense_head(name):
    kwargs, size = FAMILIES[name]
    pool = "flatten" if sorted(FAMILIES).index(name) % 2 else "max"  # each pool on half of them
    plain = summary.abstract_model(name, NUM_CLASSES, **kwargs)
    plain_shapes = summary.feature_shapes(plain, size)
    pooled = head_input(plain, size)
    assert plain.head.in_features == pooled[-1]
    if name not in ("vgg11", "cnn_small"):  # those pool their ConvMlp / 2x2-pooled last block
        assert pooled == plain_shapes[plain.default_cam_layer]
    model = summary.abstract_model(
        name, NUM_CLASSES, **kwargs, **HEAD, head_pool=pool, input_size=size
    )
    shapes = summary.feature_shapes(model, size)
    assert shapes["pre_logits"] == (1, 12) and shapes["logits"] == (1, NUM_CLASSES)
    assert list(shapes) == list(plain_shapes)  # same features, in the same order
    width = math.prod(pooled[1:]) if pool == "flatten" else pooled[-1]
    old_head = pooled[-1] * NUM_CLASSES + NUM_CLASSES
    new_head = width * 24 + 24 + 24 * 12 + 12 + 12 * NUM_CLASSES + NUM_CLASSES
    assert n_params(model) == n_params(plain) - old_head + new_head
    assert backbone_units(model) == backbone_units(plain)  # hidden layers belong to the head
    assert model.head.in_features == 12 and model.num_features == 12


def jit_forward(model, x, *, train):
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda state, x: nnx.merge(graphdef, state, copy=True)(x, train=train))
    return jax.tree.map(np.asarray, fn(state, x))


def test_pre_logits_is_the_last_hidden_layer_and_dropout_only_trains():
    model = models.create("cnn_small", num_classes=3, rngs=nnx.Rngs(0), head=(8,), head_dropout=0.5)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    logits, features = jit_forward(model, x, train=False)
    # The head's input: the last block 2x2 max-pooled, then global average pooled.
    last = features["stage3"]
    b, h, w, c = last.shape
    pooled = last.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)).mean(axis=(1, 2))
    dense = model.head_hidden.dense[0]
    expected = np.maximum(pooled @ np.asarray(dense.kernel[...]) + np.asarray(dense.bias[...]), 0)
    np.testing.assert_allclose(features["pre_logits"], expected, rtol=1e-4, atol=1e-5)
    head = np.asarray(model.head.kernel[...]), np.asarray(model.head.bias[...])
    np.testing.assert_allclose(logits, expected @ head[0] + head[1], rtol=1e-4, atol=1e-5)
    train_logits, _ = jit_forward(model, x, train=True)  # dropout after the hidden layer
    assert not np.allclose(train_logits, logits)
    assert summary.summarize_model(model, 32)[-2]["unit"] == "head"  # no 'other' row


def test_pretrained_weights_fill_the_backbone_and_leave_the_head_fresh():
    case = "timm_mobilenetv2_100"  # a shrunk timm model's weights (tests/weights/fixtures)
    spec = json.load(open(os.path.join(FIXTURES, "cases.json")))[case]
    path = os.path.join(FIXTURES, case + ".safetensors")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()}
    model, report = convert.create_pretrained(
        spec["model"], spec["source"], path, num_classes=3, model_kwargs={**kwargs, **HEAD}
    )
    assert report.skipped_head  # the file's 10-class classifier is not ours
    variables = nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))
    backbone = {layout.path_str(p): v for p, v in variables if p[0] not in models.HEAD_PARTS}
    head = [p for p, _ in variables if p[0] in models.HEAD_PARTS]
    # Every backbone tensor came from the file, none of the head's.
    assert sorted(m[0] for m in report.matched) == sorted(backbone)
    assert report.num_params == sum(v.get_value().size for v in backbone.values())
    assert len(head) == 6  # 2 hidden layers + classifier, kernel and bias each: fresh
