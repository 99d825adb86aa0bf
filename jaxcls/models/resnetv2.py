"""Pre-activation ResNet, "ResNet v2" (He et al., ECCV 2016, "Identity Mappings in Deep Residual
Networks"), in two layouts:

``layout='timm'`` - timm ``resnetv2.py`` with ``conv_layer=create_conv2d`` and
``norm_layer=BatchNormAct2d`` (``resnetv2_50/101/152``):

* Stem: 7x7 stride-2 conv (no bias, no norm: the first block pre-activates it) -> 3x3 stride-2
  max pool.
* ``PreActBottleneck``: ``x_pre = relu(bn1(x))``; shortcut = ``x`` or a 1x1 (strided) conv of
  ``x_pre`` in the first block of a stage; residual = conv1 1x1 -> bn2/relu -> conv2 3x3 (the stride
  sits here, "v1.5" style) -> bn3/relu -> conv3 1x1; no activation after the sum.
* A final BN + ReLU (``norm``) after the last stage, then global average pool and the classifier.
* BatchNorm eps 1e-5, PyTorch momentum 0.1 (Flax 0.9). timm 1.0.31: resnetv2_50 = 25,549,352.

``layout='keras'`` - ``keras.applications.ResNet50V2/101V2/152V2`` (``resnet_v2.py``'s
``stack_residual_blocks_v2``/``residual_block_v2``), which differs in where strides and biases are:

* The stem conv has a bias and its max pool pads with zeros (``ZeroPadding2D``), not -inf. Every stage's *last* block carries the stride (stages 1-3), and the last
  stage has none; a strided block without a projection subsamples its shortcut with a 1x1 stride-2
  max pool, i.e. ``x[:, ::2, ::2]``.
* The projection shortcut conv and conv3 have biases; BatchNorm eps 1.001e-5, Keras momentum 0.99.
  Keras' trainable count at 1000 classes: ResNet50V2 = 25,568,360.

Features: 'stem' (after the max pool), 'stage1'..'stage4' (stage outputs; 'stage4' includes the
final BN + ReLU, Keras' 'post_relu' - the map the pooling sees and the Grad-CAM layer), 'pre_logits'.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry

_ZEROS = nnx.initializers.zeros_init()

LAYOUTS = {
    # conv biases (stem, projection, conv3), BN eps, Flax BN momentum, stride in the last block
    "timm": dict(bias=False, eps=1e-5, momentum=0.9, stride_last=False),
    "keras": dict(bias=True, eps=1.001e-5, momentum=0.99, stride_last=True),
}


class Stem(nnx.Module):
    """The 7x7 stride-2 stem conv (timm ``stem.conv``); pooling happens in the model."""

    def __init__(self, cin, cout, *, use_bias, dtype, rngs):
        self.conv = layers.Conv2d(cin, cout, 7, stride=2, use_bias=use_bias, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.conv(x)


class Downsample(nnx.Module):
    """Projection shortcut of a pre-activation block: a 1x1 (strided) conv, no norm."""

    def __init__(self, cin, cout, stride, *, use_bias, dtype, rngs):
        self.conv = layers.Conv2d(
            cin, cout, 1, stride=stride, use_bias=use_bias, dtype=dtype, rngs=rngs
        )

    def __call__(self, x):
        return self.conv(x)


class PreActBottleneck(nnx.Module):
    """BN-ReLU -> 1x1 -> BN-ReLU -> 3x3 (stride) -> BN-ReLU -> 1x1 (x4), identity sum after."""

    def __init__(
        self,
        cin,
        cout,
        stride,
        *,
        project: bool,
        layout: dict,
        drop_path: float,
        zero_init_last: bool,
        dtype,
        rngs,
    ):
        mid = cout // 4
        bias = layout["bias"]
        bn = dict(eps=layout["eps"], momentum=layout["momentum"], dtype=dtype, rngs=rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.stride = stride
        self.downsample = Downsample(cin, cout, stride, use_bias=bias, **kw) if project else None
        self.norm1 = layers.batch_norm(cin, **bn)
        self.conv1 = layers.Conv2d(cin, mid, 1, **kw)
        self.norm2 = layers.batch_norm(mid, **bn)
        self.conv2 = layers.Conv2d(mid, mid, 3, stride=stride, **kw)
        self.norm3 = layers.batch_norm(mid, **bn)
        self.conv3 = layers.Conv2d(
            mid,
            cout,
            1,
            use_bias=bias,
            kernel_init=_ZEROS if zero_init_last else layers.conv_init,
            **kw,
        )
        self.drop_path = layers.DropPath(drop_path, rngs=rngs) if drop_path > 0 else None

    def __call__(self, x, *, train: bool):
        ura = not train
        x_pre = self.norm1.activated(x, "relu", use_running_average=ura)
        if self.downsample is not None:
            shortcut = self.downsample(x_pre)
        elif self.stride > 1:  # Keras: MaxPooling2D(1, strides=stride) of the block input
            shortcut = x[:, :: self.stride, :: self.stride]
        else:
            shortcut = x
        y = self.conv1(x_pre)
        y = self.conv2(self.norm2.activated(y, "relu", use_running_average=ura))
        y = self.conv3(self.norm3.activated(y, "relu", use_running_average=ura))
        if self.drop_path is not None:
            y = self.drop_path(y, train=train)
        return y + shortcut


class ResNetV2(nnx.Module):
    """Pre-activation ResNet with bottleneck blocks; see the module docstring for the layouts."""

    def __init__(
        self,
        *,
        num_classes: int,
        depths: tuple[int, ...] = (3, 4, 6, 3),
        channels: tuple[int, ...] = (256, 512, 1024, 2048),
        stem_width: int = 64,
        layout: str = "timm",
        zero_init_last: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        head_pool: str = "avg",
        input_size: int | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        if len(depths) != len(channels):
            raise ValueError(f"depths {depths} and channels {channels} differ in length")
        lay = LAYOUTS[layout]
        self.layout = layout
        self.dtype = dtype
        self.default_cam_layer = f"stage{len(depths)}"
        self.stem = Stem(in_chans, stem_width, use_bias=lay["bias"], dtype=dtype, rngs=rngs)

        total, idx, cin = sum(depths), 0, stem_width
        stages = []
        for s, (depth, cout) in enumerate(zip(depths, channels)):
            if lay["stride_last"]:  # Keras: the last block of every stage but the last one
                strides = [1] * (depth - 1) + [2 if s < len(depths) - 1 else 1]
            else:  # timm: the first block of every stage but the first one
                strides = [2 if s > 0 else 1] + [1] * (depth - 1)
            blocks = []
            for b, stride in enumerate(strides):
                blocks.append(
                    PreActBottleneck(
                        cin,
                        cout,
                        stride,
                        project=b == 0,
                        layout=lay,
                        drop_path=drop_path_rate * idx / max(total - 1, 1),
                        zero_init_last=zero_init_last,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                cin = cout
                idx += 1
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.norm = layers.batch_norm(
            cin, eps=lay["eps"], momentum=lay["momentum"], dtype=dtype, rngs=rngs
        )
        heads.attach(
            self,
            cin,
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
        x = self.stem(x.astype(self.dtype))
        if self.layout == "keras":  # ZeroPadding2D(1) + MaxPooling2D(3, 2): pads the conv with 0
            x = layers.max_pool(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 3, 2, "valid")
        else:
            x = layers.max_pool(x, 3, 2, "symmetric")
        features["stem"] = x
        n = len(self.stages)
        for i, stage in enumerate(self.stages):
            for blk in stage:
                x = blk(x, train=train)
            if i == n - 1:
                x = self.norm.activated(x, "relu", use_running_average=not train)
            features[f"stage{i + 1}"] = x
        return x, features


_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

for _depth, _depths in _DEPTHS.items():
    registry.register(f"resnetv2_{_depth}", ResNetV2, default_size=224, depths=_depths)
    registry.register(
        f"keras_resnet{_depth}v2",
        ResNetV2,
        default_size=224,
        aliases=(f"ResNet{_depth}V2",),
        depths=_depths,
        layout="keras",
    )
