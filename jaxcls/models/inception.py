"""Inception-v3 (Szegedy et al., CVPR 2016, "Rethinking the Inception Architecture"), timm layout.

timm ``inception_v3.py`` (the torchvision ``Inception3`` port): every conv is a ``ConvNormAct``
(conv without bias -> BatchNorm eps 1e-3 -> ReLU) with explicit PyTorch-style padding; module names
follow TF-slim (``Conv2d_1a_3x3`` ... ``Mixed_7c``) so weight maps stay one-to-one.

* Stem: Conv2d_1a_3x3 (s2, valid) -> 2a (valid) -> 2b (pad 1) -> max pool 3/2 -> 3b 1x1 -> 4a 3x3
  (valid) -> max pool 3/2. The valid convolutions need at least 75x75 inputs.
* Mixed_5b-5d (InceptionA), 6a (InceptionB, reduction), 6b-6e (InceptionC, factorised 1x7/7x1),
  7a (InceptionD, reduction), 7b-7c (InceptionE, expanded 1x3/3x1 branches); branches concatenate
  in timm/TF order. Pool branches average over a 3x3 window with ``count_include_pad`` (PyTorch)
  and then convolve 1x1; here the 1x1 convolution runs first (`layers.avg_pool_pointwise`).
* ``aux_logits``: timm's default is False and timm's count excludes the auxiliary classifier:
  inception_v3 = 23,834,568 at 1000 classes (torchvision's 27,161,264 includes AuxLogits). With
  ``aux_logits=True`` an ``AuxLogits`` head on Mixed_6e is built (+3,326,696 at 1000 classes) and,
  in training, its logits are returned as ``features['aux_logits']`` (after 'pre_logits').

``keras_inception_v3`` (alias ``InceptionV3``) is ``keras.applications.InceptionV3``: the same
graph, but Keras' ``conv2d_bn`` uses ``BatchNormalization(scale=False)`` (no gamma; trainable
23,817,352) and its pool branches use ``AveragePooling2D(padding='same')``, which excludes the padding
from the average.

Features: 'stem' (Conv2d_2b_3x3, stride 2), 'stage1' (pool, 3b, 4a; stride 4), 'stage2' (pool,
Mixed_5b-5d; stride 8), 'stage3' (Mixed_6a-6e; stride 16), 'stage4' (Mixed_7a-7c; stride 32,
Keras 'mixed10', the Grad-CAM layer), 'pre_logits' (2048).
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry

# A unit's explicit padding goes to its convolution (the native kernels and XLA's convolution pad
# as they read, and their input gradient comes out unpadded) instead of a jnp.pad before it,
# whose gradient is a slice XLA writes out; tools/bench_ab.py --variant=inception_pad_first
# turns it off.
PAD_IN_CONV = True


class ConvNormAct(nnx.Module):
    """conv (no bias, explicit (ph, pw) padding) -> BatchNorm -> ReLU, timm ``ConvNormAct``."""

    def __init__(self, cin, cout, kernel_size, *, stride=1, padding=(0, 0), cfg, rngs):
        kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        padding = (padding, padding) if isinstance(padding, int) else padding
        self.padding = tuple(padding)
        dtype = cfg["dtype"]
        self.conv = layers.Conv2d(
            cin, cout, kernel_size, stride=stride, padding="valid", dtype=dtype, rngs=rngs
        )
        # Keras' Inception-v3 uses BatchNormalization(scale=False): no gamma, a constant 1.
        self.bn = layers.BatchNorm(
            cout, eps=cfg["eps"], use_scale=cfg["bn_scale"], dtype=dtype, rngs=rngs
        )

    def conv_out(self, x):
        """The unit's convolution, its padding included."""
        ph, pw = self.padding
        if PAD_IN_CONV:
            return self.conv(x, pads=((ph, ph), (pw, pw)))
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        return self.conv(x)

    def __call__(self, x, *, train: bool):
        return self.norm_act(self.conv_out(x), train=train)

    def norm_act(self, y, *, train: bool):
        """BatchNorm and ReLU of the convolution's output ``y`` (not `BatchNorm.activated`: here
        the ReLU's gradient inside BatchNorm's backward made the step 0.98-0.99x, since half the
        units' output gradients are slices of a block's concatenated one, which XLA fuses into
        the ReLU's select but has to write out for the native sums; docs/performance.md)."""
        return jax.nn.relu(self.bn(y, use_running_average=not train))


def _pool_branch(unit: ConvNormAct, x, count_include_pad, *, train: bool):
    """avg pool 3x3 stride 1 -> ``unit`` (a 1x1 ConvNormAct), computed as conv -> pool -> BN-ReLU
    (`layers.avg_pool_pointwise`: the pool then averages the unit's fewer output channels)."""
    y = layers.avg_pool_pointwise(
        x, unit.conv, 3, 1, "symmetric", count_include_pad, conv_first=False
    )
    return unit.norm_act(y, train=train)


class InceptionA(nnx.Module):
    def __init__(self, cin, pool_features, *, cfg, rngs):
        c = dict(cfg=cfg, rngs=rngs)
        self.branch1x1 = ConvNormAct(cin, 64, 1, **c)
        self.branch5x5_1 = ConvNormAct(cin, 48, 1, **c)
        self.branch5x5_2 = ConvNormAct(48, 64, 5, padding=2, **c)
        self.branch3x3dbl_1 = ConvNormAct(cin, 64, 1, **c)
        self.branch3x3dbl_2 = ConvNormAct(64, 96, 3, padding=1, **c)
        self.branch3x3dbl_3 = ConvNormAct(96, 96, 3, padding=1, **c)
        self.branch_pool = ConvNormAct(cin, pool_features, 1, **c)
        self.count_include_pad = cfg["count_include_pad"]

    def __call__(self, x, *, train):
        t = dict(train=train)
        b1 = self.branch1x1(x, **t)
        b5 = self.branch5x5_2(self.branch5x5_1(x, **t), **t)
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x, **t), **t), **t)
        bp = _pool_branch(self.branch_pool, x, self.count_include_pad, **t)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, cin, *, cfg, rngs):
        c = dict(cfg=cfg, rngs=rngs)
        self.branch3x3 = ConvNormAct(cin, 384, 3, stride=2, **c)
        self.branch3x3dbl_1 = ConvNormAct(cin, 64, 1, **c)
        self.branch3x3dbl_2 = ConvNormAct(64, 96, 3, padding=1, **c)
        self.branch3x3dbl_3 = ConvNormAct(96, 96, 3, stride=2, **c)

    def __call__(self, x, *, train):
        t = dict(train=train)
        b3 = self.branch3x3(x, **t)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x, **t), **t), **t)
        return jnp.concatenate([b3, bd, layers.max_pool(x, 3, 2, "valid")], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, cin, c7, *, cfg, rngs):
        c = dict(cfg=cfg, rngs=rngs)
        self.branch1x1 = ConvNormAct(cin, 192, 1, **c)
        self.branch7x7_1 = ConvNormAct(cin, c7, 1, **c)
        self.branch7x7_2 = ConvNormAct(c7, c7, (1, 7), padding=(0, 3), **c)
        self.branch7x7_3 = ConvNormAct(c7, 192, (7, 1), padding=(3, 0), **c)
        self.branch7x7dbl_1 = ConvNormAct(cin, c7, 1, **c)
        self.branch7x7dbl_2 = ConvNormAct(c7, c7, (7, 1), padding=(3, 0), **c)
        self.branch7x7dbl_3 = ConvNormAct(c7, c7, (1, 7), padding=(0, 3), **c)
        self.branch7x7dbl_4 = ConvNormAct(c7, c7, (7, 1), padding=(3, 0), **c)
        self.branch7x7dbl_5 = ConvNormAct(c7, 192, (1, 7), padding=(0, 3), **c)
        self.branch_pool = ConvNormAct(cin, 192, 1, **c)
        self.count_include_pad = cfg["count_include_pad"]

    def __call__(self, x, *, train):
        t = dict(train=train)
        b1 = self.branch1x1(x, **t)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x, **t), **t), **t)
        bd = self.branch7x7dbl_1(x, **t)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            bd = conv(bd, **t)
        bd = self.branch7x7dbl_5(bd, **t)
        bp = _pool_branch(self.branch_pool, x, self.count_include_pad, **t)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, cin, *, cfg, rngs):
        c = dict(cfg=cfg, rngs=rngs)
        self.branch3x3_1 = ConvNormAct(cin, 192, 1, **c)
        self.branch3x3_2 = ConvNormAct(192, 320, 3, stride=2, **c)
        self.branch7x7x3_1 = ConvNormAct(cin, 192, 1, **c)
        self.branch7x7x3_2 = ConvNormAct(192, 192, (1, 7), padding=(0, 3), **c)
        self.branch7x7x3_3 = ConvNormAct(192, 192, (7, 1), padding=(3, 0), **c)
        self.branch7x7x3_4 = ConvNormAct(192, 192, 3, stride=2, **c)

    def __call__(self, x, *, train):
        t = dict(train=train)
        b3 = self.branch3x3_2(self.branch3x3_1(x, **t), **t)
        b7 = self.branch7x7x3_1(x, **t)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7, **t)
        return jnp.concatenate([b3, b7, layers.max_pool(x, 3, 2, "valid")], axis=-1)


class InceptionE(nnx.Module):
    def __init__(self, cin, *, cfg, rngs):
        c = dict(cfg=cfg, rngs=rngs)
        self.branch1x1 = ConvNormAct(cin, 320, 1, **c)
        self.branch3x3_1 = ConvNormAct(cin, 384, 1, **c)
        self.branch3x3_2a = ConvNormAct(384, 384, (1, 3), padding=(0, 1), **c)
        self.branch3x3_2b = ConvNormAct(384, 384, (3, 1), padding=(1, 0), **c)
        self.branch3x3dbl_1 = ConvNormAct(cin, 448, 1, **c)
        self.branch3x3dbl_2 = ConvNormAct(448, 384, 3, padding=1, **c)
        self.branch3x3dbl_3a = ConvNormAct(384, 384, (1, 3), padding=(0, 1), **c)
        self.branch3x3dbl_3b = ConvNormAct(384, 384, (3, 1), padding=(1, 0), **c)
        self.branch_pool = ConvNormAct(cin, 192, 1, **c)
        self.count_include_pad = cfg["count_include_pad"]

    def __call__(self, x, *, train):
        t = dict(train=train)
        b1 = self.branch1x1(x, **t)
        b3 = self.branch3x3_1(x, **t)
        b3 = jnp.concatenate([self.branch3x3_2a(b3, **t), self.branch3x3_2b(b3, **t)], axis=-1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x, **t), **t)
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd, **t), self.branch3x3dbl_3b(bd, **t)], -1)
        bp = _pool_branch(self.branch_pool, x, self.count_include_pad, **t)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nnx.Module):
    """Auxiliary classifier on Mixed_6e: avg pool 5/3 -> 1x1 (128) -> 5x5 (768) -> pool -> fc."""

    def __init__(self, cin, num_classes, *, cfg, rngs):
        self.conv0 = ConvNormAct(cin, 128, 1, cfg=cfg, rngs=rngs)
        self.conv1 = ConvNormAct(128, 768, 5, cfg=cfg, rngs=rngs)
        self.fc = layers.classifier(768, num_classes, dtype=cfg["dtype"], rngs=rngs)

    def __call__(self, x, *, train):
        x = self.conv1(self.conv0(layers.avg_pool(x, 5, 3, "valid"), train=train), train=train)
        return self.fc(layers.global_pool(x, "avg")).astype(jnp.float32)


class InceptionV3(nnx.Module):
    """Inception-v3; see the module docstring."""

    default_cam_layer = "stage4"

    def __init__(
        self,
        *,
        num_classes: int,
        aux_logits: bool = False,
        bn_eps: float = 1e-3,
        bn_scale: bool = True,
        count_include_pad: bool = True,
        drop_rate: float = 0.0,
        head: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        head_pool: str = "avg",
        input_size: int | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        cfg = dict(eps=bn_eps, bn_scale=bn_scale, count_include_pad=count_include_pad, dtype=dtype)
        c = dict(cfg=cfg, rngs=rngs)
        self.dtype = dtype
        self.Conv2d_1a_3x3 = ConvNormAct(in_chans, 32, 3, stride=2, **c)
        self.Conv2d_2a_3x3 = ConvNormAct(32, 32, 3, **c)
        self.Conv2d_2b_3x3 = ConvNormAct(32, 64, 3, padding=1, **c)
        self.Conv2d_3b_1x1 = ConvNormAct(64, 80, 1, **c)
        self.Conv2d_4a_3x3 = ConvNormAct(80, 192, 3, **c)
        self.Mixed_5b = InceptionA(192, 32, **c)
        self.Mixed_5c = InceptionA(256, 64, **c)
        self.Mixed_5d = InceptionA(288, 64, **c)
        self.Mixed_6a = InceptionB(288, **c)
        self.Mixed_6b = InceptionC(768, 128, **c)
        self.Mixed_6c = InceptionC(768, 160, **c)
        self.Mixed_6d = InceptionC(768, 160, **c)
        self.Mixed_6e = InceptionC(768, 192, **c)
        self.AuxLogits = InceptionAux(768, num_classes, **c) if aux_logits else None
        self.Mixed_7a = InceptionD(768, **c)
        self.Mixed_7b = InceptionE(1280, **c)
        self.Mixed_7c = InceptionE(2048, **c)
        heads.attach(
            self,
            2048,
            num_classes,
            head=head,
            head_dropout=head_dropout,
            head_pool=head_pool,
            drop_rate=drop_rate,
            input_size=input_size,
            in_chans=in_chans,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, train: bool):
        x, features = self.forward_features(x, train=train)
        return heads.forward(self, x, features, train=train)

    def forward_features(self, x: jax.Array, *, train: bool):
        """The backbone: the map the head pools, and the features without 'pre_logits'."""
        features = collections.OrderedDict()
        t = dict(train=train)
        # The two stem pools follow conv -> BatchNorm -> ReLU units: `layers.unit_max_pooled`
        # (in training the ReLU on the pooled map and BatchNorm inside the pool).
        pooled = dict(act="relu", train=train)
        x = self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x.astype(self.dtype), **t), **t)
        features["stem"], x = layers.unit_max_pooled(self.Conv2d_2b_3x3, x, 3, 2, "valid", **pooled)
        x = self.Conv2d_3b_1x1(x, **t)
        features["stage1"], x = layers.unit_max_pooled(
            self.Conv2d_4a_3x3, x, 3, 2, "valid", **pooled
        )
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x, **t), **t), **t)
        features["stage2"] = x
        x = self.Mixed_6a(x, **t)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x, **t)
        features["stage3"] = x
        aux = self.AuxLogits(x, **t) if (self.AuxLogits is not None and train) else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x, **t), **t), **t)
        features["stage4"] = x
        if aux is not None:
            features["aux_logits"] = aux
        return x, features


registry.register("inception_v3", InceptionV3, default_size=299)
registry.register(
    "keras_inception_v3",
    InceptionV3,
    default_size=299,
    aliases=("InceptionV3",),
    bn_scale=False,
    count_include_pad=False,
)
