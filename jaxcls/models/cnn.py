"""Configurable scratch CNNs: the "conv blocks + dense layers" family from Keras tutorials.

One compact spec describes the whole network, so the designs users compare in notebooks are data:

* ``filters``: output channels of each conv block, e.g. ``(16, 32, 64, 128)``;
* ``convs_per_block``: conv layers per block (each conv -> [BatchNorm] -> activation);
* ``kernel_size``, ``padding``: 'valid' (Keras' default: no padding, each 3x3 conv trims 2 pixels)
  or 'symmetric' (== Keras 'same' for odd kernels at stride 1);
* ``batch_norm``: with BatchNorm after every conv; ``bn_after_act`` puts it after the activation
  (``Conv2D(activation='relu') -> BatchNormalization()``, the usual Keras tutorial order) instead
  of before it; ``conv_bias``: whether convs have a bias (None: only without BatchNorm; Keras'
  ``Conv2D`` always has one, so ``conv_bias=True`` matches a Keras model with BatchNorm);
* ``pool``: 'max' | 'avg' | None, a 2x2 stride-2 pooling after every block (Keras MaxPooling2D,
  'valid': odd sides round down);
* ``global_pool``: 'avg' | 'max' global pooling, or 'flatten' (then ``input_size`` fixes the
  flattened width, as in Keras ``Flatten -> Dense``);
* ``dense``: hidden dense widths, e.g. ``(256,)``, each dense -> act -> dropout;
* ``dropout``: dropout rate after each hidden dense layer (and before the classifier when there is
  no hidden layer).

The family-wide head arguments (`jaxcls.models.heads`) name the same parts and win when given:
``head`` (for ``dense``), ``head_pool`` (for ``global_pool``), ``head_dropout`` (for ``dropout``
after hidden layers) and ``drop_rate`` (the dropout just before the classifier; by default
``dropout`` without hidden layers, else none). The layers line up one for one with a Keras
``Sequential`` of the same spec, so the trainable parameter count is Keras' (tested).

Features: 'stem' is the first conv layer's output; 'stage1' the rest of block 1; 'stageK' (K > 1)
is the pooling of the previous block followed by block K's convs, so each stage map is the last
conv output of its block at full block resolution (what Keras Grad-CAM recipes pick as the last
conv layer). 'pre_logits' is the output of the last hidden dense layer (or the pooled vector
without dense layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry


class ConvBNAct(nnx.Module):
    """conv -> optional BatchNorm -> activation (or conv -> activation -> BatchNorm)."""

    def __init__(
        self, cin, cout, kernel_size, *, batch_norm, bn_after_act, bias, act, padding, dtype, rngs
    ):
        self.act = act
        self.bn_after_act = bn_after_act
        self.conv = layers.Conv2d(
            cin, cout, kernel_size, padding=padding, use_bias=bias, dtype=dtype, rngs=rngs
        )
        self.bn = layers.batch_norm(cout, dtype=dtype, rngs=rngs) if batch_norm else None

    def __call__(self, x, *, train: bool):
        if self.act_last:
            if self.bn is not None:
                return self.bn.activated(self.conv(x), self.act, use_running_average=not train)
            return layers.get_act(self.act)(self.conv(x))
        return self.bn(layers.get_act(self.act)(self.conv(x)), use_running_average=not train)

    @property
    def act_last(self) -> bool:
        """Whether the activation is the unit's last operation (no BatchNorm after it)."""
        return self.bn is None or not self.bn_after_act

    def conv_out(self, x):
        """The unit's convolution."""
        return self.conv(x)


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
        bn_after_act: bool = False,
        conv_bias: bool | None = None,
        pool: str | None = "max",
        global_pool: str = "avg",
        input_size: int | None = None,
        dense: Sequence[int] = (),
        dropout: float = 0.0,
        act: str = "relu",
        head: Sequence[int] | None = None,
        head_dropout: float | None = None,
        head_pool: str | None = None,
        drop_rate: float | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not filters or convs_per_block < 1:
            raise ValueError("a CNN needs at least one conv block with at least one conv")
        if pool not in ("max", "avg", None):
            raise ValueError(f"pool must be 'max', 'avg' or None, got {pool!r}")
        layers.get_act(act)
        filters = heads.hidden_widths(filters)
        self.filters = filters
        self.pool = pool
        self.act = act
        self.dtype = dtype
        bias = (not batch_norm) if conv_bias is None else bool(conv_bias)
        conv = dict(
            batch_norm=batch_norm,
            bn_after_act=bn_after_act,
            bias=bias,
            act=act,
            padding=padding,
            dtype=dtype,
            rngs=rngs,
        )

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

        hidden = heads.hidden_widths(dense if head is None else head)
        heads.attach(
            self,
            cin,
            num_classes,
            head=hidden,
            head_dropout=dropout if head_dropout is None else head_dropout,
            head_pool=global_pool if head_pool is None else head_pool,
            drop_rate=(0.0 if hidden else dropout) if drop_rate is None else drop_rate,
            input_size=input_size,
            in_chans=in_chans,
            act=act,
            dtype=dtype,
            rngs=rngs,
        )

    def _unit(self, unit: ConvBNAct, x, *, train: bool, pooled: bool):
        """``(unit(x), pooling of it)``, the second only where a pooling follows (``pooled``).

        In training a max pool after a ReLU unit (conv -> [BatchNorm] -> ReLU) takes the unit's
        output before its ReLU and applies the ReLU on the pooled map, and with BatchNorm the
        pool normalises the taps it reads (`layers.norm_act_max_pooled`, as in ResNet's stem):
        the same values and gradients, the ReLU and its gradient on a quarter of the map, one
        pass over the full-size map fewer each way. In evaluation the activation stays before the
        pool, so the feature maps Grad-CAM differentiates against are the ones the logits use."""
        if not pooled:
            return unit(x, train=train), None
        if self.pool == "max" and unit.act_last:
            return layers.unit_max_pooled(unit, x, 2, 2, "valid", act=unit.act, train=train)
        y = unit(x, train=train)
        return y, self._pool(y)

    def _pool(self, x):
        """The pooling after a block."""
        if self.pool == "max":
            return layers.max_pool(x, 2, 2, "valid")
        if self.pool == "avg":
            return layers.avg_pool(x, 2, 2, "valid")
        return x

    def __call__(self, x: jax.Array, *, train: bool):
        x, features = self.forward_features(x, train=train)
        return heads.forward(self, x, features, train=train)

    def forward_features(self, x: jax.Array, *, train: bool):
        """The conv blocks: the map the head pools, and the features without 'pre_logits'."""
        # Block 1 is the stem and the first stage's convs; each block ends in the pooling.
        return layers.pooled_blocks(
            [[self.stem, *self.stages[0]], *self.stages[1:]],
            x.astype(self.dtype),
            lambda unit, x, last: self._unit(unit, x, train=train, pooled=last),
        )


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
