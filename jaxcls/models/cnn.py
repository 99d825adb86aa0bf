"""Configurable scratch CNNs: the "conv blocks + dense layers" family from Keras tutorials.

One compact spec describes the whole network, so the designs users compare in notebooks are data:

* ``filters``: output channels of each conv block, e.g. ``(16, 32, 64, 128)``;
* ``convs_per_block``: conv layers per block (each conv -> [BatchNorm] -> activation);
* ``kernel_size``, ``padding`` ('symmetric' == Keras 'same' for odd kernels at stride 1);
* ``batch_norm``: conv -> BN -> act (convs then have no bias) or conv(+bias) -> act;
* ``pool``: 'max' | 'avg' | None, a 2x2 stride-2 pooling after every block (Keras MaxPooling2D);
* ``global_pool``: 'avg' | 'max' global pooling, or 'flatten' (then ``input_size`` fixes the
  flattened width, as in Keras ``Flatten -> Dense``);
* ``dense``: hidden dense widths, e.g. ``(256,)``, each dense -> act -> dropout;
* ``dropout``: dropout rate after each hidden dense layer (and before the classifier).

Features: 'stem' is the first conv layer's output; 'stage1' the rest of block 1; 'stageK' (K > 1)
is the pooling of the previous block followed by block K's convs, so each stage map is the last
conv output of its block at full block resolution (what Keras Grad-CAM recipes pick as the last
conv layer). 'pre_logits' is the output of the last hidden dense layer (or the pooled vector
without dense layers).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import layers, registry


class ConvBNAct(nnx.Module):
    """conv -> optional BatchNorm -> activation."""

    def __init__(self, cin, cout, kernel_size, *, batch_norm, act, padding, dtype, rngs):
        self.act = act
        self.conv = layers.Conv2d(
            cin, cout, kernel_size, padding=padding, use_bias=not batch_norm, dtype=dtype, rngs=rngs
        )
        self.bn = layers.batch_norm(cout, dtype=dtype, rngs=rngs) if batch_norm else None

    def __call__(self, x, *, train: bool):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, use_running_average=not train)
        return layers.get_act(self.act)(x)


class CNN(nnx.Module):
    """A plain conv-net built from a compact spec (see module docstring)."""

    default_cam_layer: str

    def __init__(
        self,
        *,
        num_classes: int,
        filters: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 1,
        kernel_size: int = 3,
        padding: str = "symmetric",
        batch_norm: bool = True,
        pool: str | None = "max",
        global_pool: str = "avg",
        input_size: int | None = None,
        dense: Sequence[int] = (),
        dropout: float = 0.0,
        act: str = "relu",
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not filters or convs_per_block < 1:
            raise ValueError("a CNN needs at least one conv block with at least one conv")
        if pool not in ("max", "avg", None):
            raise ValueError(f"pool must be 'max', 'avg' or None, got {pool!r}")
        if global_pool not in ("avg", "max", "flatten"):
            raise ValueError(f"global_pool must be 'avg', 'max' or 'flatten', got {global_pool!r}")
        if global_pool == "flatten" and not input_size:
            raise ValueError("global_pool='flatten' needs input_size (the flattened width)")
        layers.get_act(act)
        self.filters = tuple(filters)
        self.pool = pool
        self.global_pool = global_pool
        self.input_size = input_size
        self.act = act
        self.dtype = dtype
        conv = dict(batch_norm=batch_norm, act=act, padding=padding, dtype=dtype, rngs=rngs)

        self.stem = ConvBNAct(in_chans, filters[0], kernel_size, **conv)
        stages = []
        cin = filters[0]
        for i, cout in enumerate(filters):
            n = convs_per_block - 1 if i == 0 else convs_per_block
            block = []
            for _ in range(n):
                block.append(ConvBNAct(cin, cout, kernel_size, **conv))
                cin = cout
            stages.append(nnx.List(block))
        self.stages = nnx.List(stages)
        self.default_cam_layer = f"stage{len(filters)}"

        if global_pool == "flatten":
            side = input_size
            if pool is not None:
                for _ in filters:
                    side //= 2
            if side < 1:
                raise ValueError(f"input_size {input_size} is too small for {len(filters)} pools")
            width = side * side * cin
        else:
            width = cin
        dense_layers, drops = [], []
        for d in dense:
            dense_layers.append(nnx.Linear(width, d, dtype=dtype, rngs=rngs))
            width = d
        # One dropout after every hidden dense layer; the last one is the pre-classifier dropout.
        for _ in range(max(len(dense) - 1, 0)):
            drops.append(layers.dropout(dropout, rngs=rngs))
        self.dense = nnx.List(dense_layers)
        self.dense_drop = nnx.List(drops)
        self.head_drop = layers.dropout(dropout, rngs=rngs)
        self.num_features = width
        self.head = layers.classifier(width, num_classes, dtype=dtype, rngs=rngs)

    def _pool(self, x):
        if self.pool == "max":
            return layers.max_pool(x, 2, 2, "valid")
        if self.pool == "avg":
            return layers.avg_pool(x, 2, 2, "valid")
        return x

    def __call__(self, x: jax.Array, *, train: bool):
        features = collections.OrderedDict()
        x = self.stem(x.astype(self.dtype), train=train)
        features["stem"] = x
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self._pool(x)
            for conv in stage:
                x = conv(x, train=train)
            features[f"stage{i + 1}"] = x
        x = self._pool(x)
        if self.global_pool == "flatten":
            if x.shape[1] * x.shape[2] * x.shape[3] != self._flat_in():
                raise ValueError(
                    f"input {x.shape} does not match the flatten width built for input_size="
                    f"{self.input_size}; create the model with input_size=<image side>"
                )
            x = x.reshape(x.shape[0], -1)
        else:
            x = layers.global_pool(x, self.global_pool)
        act = layers.get_act(self.act)
        for i, dense in enumerate(self.dense):
            x = act(dense(x))
            if i < len(self.dense_drop):
                x = self.dense_drop[i](x, deterministic=not train)
        features["pre_logits"] = x
        x = self.head_drop(x, deterministic=not train)
        logits = self.head(x).astype(jnp.float32)
        return logits, features

    def _flat_in(self) -> int:
        if self.dense:
            return self.dense[0].in_features
        return self.head.in_features


registry.register("cnn", CNN, default_size=64, filters=(32, 64, 128), batch_norm=True, dropout=0.2)
registry.register(
    "cnn_small", CNN, default_size=32, filters=(16, 32, 64), batch_norm=True, dropout=0.0
)
# The design from a user's report: 4 conv layers 16 -> 32 -> 64 -> 128 with max pooling, Flatten,
# Dense(256) + Dropout(0.5), no BatchNorm.
registry.register(
    "cnn_conv4invto128",
    CNN,
    default_size=128,
    input_size=128,
    filters=(16, 32, 64, 128),
    batch_norm=False,
    pool="max",
    global_pool="flatten",
    dense=(256,),
    dropout=0.5,
)
