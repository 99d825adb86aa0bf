"""ResNet v1.5 (He et al., 2016, "Deep Residual Learning"), torchvision / timm ``resnet.py`` layout.

* Stem: 7x7 stride-2 conv (64) -> BN -> ReLU -> 3x3 stride-2 max pool (``stem='imagenet'``), or a
  3x3 stride-1 conv without pooling for 32x32 images (``stem='cifar'``, the CIFAR ResNet stem).
* Stages of BasicBlocks (ResNet-18/34) or Bottlenecks (ResNet-50/101/152), widths 64-128-256-512,
  expansion 1 or 4. The stride sits on the 3x3 conv of a bottleneck ("v1.5", torchvision since 2017,
  timm default), and the shortcut is a 1x1 strided conv + BN where the shape changes.
* BatchNorm eps 1e-5, PyTorch momentum 0.1 (Flax 0.9). ``zero_init_last`` initialises the last BN
  scale of each residual branch to zero (Goyal et al., 2017), as timm does by default.
* Optional stochastic depth (``drop_path_rate``, linear in the block index) and dropout before the
  classifier (``drop_rate``).

Parameter count at 1000 classes matches timm/torchvision exactly (resnet50: 25,557,032).

``layout='keras'`` is the ``keras.applications.ResNet50/101/152`` layout (``resnet.py``
``residual_block_v1``), ResNet v1 proper: every conv has a bias, the stride sits on the *first* 1x1
conv of a bottleneck (and on its projection), BatchNorm eps 1.001e-5 and Keras momentum 0.99, and no
zero-initialised last BN. Keras' trainable count at 1000 classes: ResNet50 = 25,583,592 (the
biases add 26,560), registered as ``keras_resnet50`` with the alias ``ResNet50``.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry

_ZEROS = nnx.initializers.zeros_init()
_ONES = nnx.initializers.ones_init()

LAYOUTS = {
    # conv biases, BN eps, Flax BN momentum, stride on the first 1x1 conv (v1) or the 3x3 (v1.5)
    "timm": dict(bias=False, eps=1e-5, momentum=0.9, stride_1x1=False),
    "keras": dict(bias=True, eps=1.001e-5, momentum=0.99, stride_1x1=True),
}


class Downsample(nnx.Module):
    """Projection shortcut: 1x1 strided conv + BN (torchvision ``downsample``)."""

    def __init__(self, cin, cout, stride, *, layout=LAYOUTS["timm"], dtype, rngs):
        bias, bn = layout["bias"], dict(eps=layout["eps"], momentum=layout["momentum"])
        self.conv = layers.Conv2d(
            cin, cout, 1, stride=stride, use_bias=bias, dtype=dtype, rngs=rngs
        )
        self.bn = layers.batch_norm(cout, **bn, dtype=dtype, rngs=rngs)

    def __call__(self, x, *, train: bool):
        return self.bn(self.conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
    """Two 3x3 convs; used by ResNet-18/34."""

    expansion = 1

    def __init__(self, cin, width, stride, *, drop_path, zero_init_last, dtype, rngs):
        cout = width * self.expansion
        kw = dict(dtype=dtype, rngs=rngs)
        self.conv1 = layers.Conv2d(cin, width, 3, stride=stride, **kw)
        self.bn1 = layers.batch_norm(width, **kw)
        self.conv2 = layers.Conv2d(width, cout, 3, **kw)
        self.bn2 = layers.batch_norm(cout, scale_init=_ZEROS if zero_init_last else _ONES, **kw)
        needs_proj = stride != 1 or cin != cout
        self.downsample = Downsample(cin, cout, stride, **kw) if needs_proj else None
        self.drop_path = layers.DropPath(drop_path, rngs=rngs) if drop_path > 0 else None

    def __call__(self, x, *, train: bool):
        ura = not train
        shortcut = x if self.downsample is None else self.downsample(x, train=train)
        y = self.bn1.activated(self.conv1(x), "relu", use_running_average=ura)
        y = self.bn2(self.conv2(y), use_running_average=ura)
        if self.drop_path is not None:
            y = self.drop_path(y, train=train)
        return jax.nn.relu(y + shortcut)


class Bottleneck(nnx.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand (x4); used by ResNet-50/101/152.

    With the Keras layout the stride moves to the 1x1 reduce conv and every conv has a bias.
    """

    expansion = 4

    def __init__(
        self, cin, width, stride, *, drop_path, zero_init_last, layout=LAYOUTS["timm"], dtype, rngs
    ):
        cout = width * self.expansion
        kw = dict(dtype=dtype, rngs=rngs)
        conv = dict(use_bias=layout["bias"], **kw)
        bn = dict(eps=layout["eps"], momentum=layout["momentum"], **kw)
        s1, s3 = (stride, 1) if layout["stride_1x1"] else (1, stride)
        self.conv1 = layers.Conv2d(cin, width, 1, stride=s1, **conv)
        self.bn1 = layers.batch_norm(width, **bn)
        self.conv2 = layers.Conv2d(width, width, 3, stride=s3, **conv)
        self.bn2 = layers.batch_norm(width, **bn)
        self.conv3 = layers.Conv2d(width, cout, 1, **conv)
        self.bn3 = layers.batch_norm(cout, scale_init=_ZEROS if zero_init_last else _ONES, **bn)
        needs_proj = stride != 1 or cin != cout
        self.downsample = Downsample(cin, cout, stride, layout=layout, **kw) if needs_proj else None
        self.drop_path = layers.DropPath(drop_path, rngs=rngs) if drop_path > 0 else None

    def __call__(self, x, *, train: bool):
        ura = not train
        shortcut = x if self.downsample is None else self.downsample(x, train=train)
        y = self.bn1.activated(self.conv1(x), "relu", use_running_average=ura)
        y = self.bn2.activated(self.conv2(y), "relu", use_running_average=ura)
        y = self.bn3(self.conv3(y), use_running_average=ura)
        if self.drop_path is not None:
            y = self.drop_path(y, train=train)
        return jax.nn.relu(y + shortcut)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nnx.Module):
    """ResNet v1.5 with a 4-stage layout given by ``block`` and ``depths``."""

    default_cam_layer = "stage4"

    def __init__(
        self,
        *,
        num_classes: int,
        block: str = "bottleneck",
        depths: tuple[int, ...] = (3, 4, 6, 3),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "imagenet",
        stem_width: int = 64,
        zero_init_last: bool = True,
        layout: str = "timm",
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
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(depths) != len(widths):
            raise ValueError(f"depths {depths} and widths {widths} differ in length")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        if layout != "timm" and block != "bottleneck":
            raise ValueError("the Keras layout exists for bottleneck ResNets (50/101/152) only")
        block_cls = _BLOCKS[block]
        lay = LAYOUTS[layout]
        # Keras initialises no BN scale to zero; BasicBlock has no layout argument.
        block_kw = dict(layout=lay) if block == "bottleneck" else {}
        stem_kw = dict(use_bias=lay["bias"], bn_eps=lay["eps"], bn_momentum=lay["momentum"])
        self.dtype = dtype
        self.stem_kind = stem
        self.default_cam_layer = f"stage{len(depths)}"
        if stem == "imagenet":
            self.stem = layers.ConvNormAct(
                in_chans, stem_width, 7, stride=2, dtype=dtype, rngs=rngs, **stem_kw
            )
        else:
            self.stem = layers.ConvNormAct(
                in_chans, stem_width, 3, stride=1, dtype=dtype, rngs=rngs, **stem_kw
            )

        total = sum(depths)
        idx = 0
        cin = stem_width
        stages = []
        for s, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                dpr = drop_path_rate * idx / max(total - 1, 1)
                blocks.append(
                    block_cls(
                        cin,
                        width,
                        stride,
                        drop_path=dpr,
                        zero_init_last=zero_init_last,
                        dtype=dtype,
                        rngs=rngs,
                        **block_kw,
                    )
                )
                cin = width * block_cls.expansion
                idx += 1
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
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
        if self.stem_kind == "imagenet":
            x = self.stem.max_pooled(x.astype(self.dtype), 3, 2, "symmetric", train=train)
        else:
            x = self.stem(x.astype(self.dtype), train=train)
        features["stem"] = x
        for i, stage in enumerate(self.stages):
            for blk in stage:
                x = blk(x, train=train)
            features[f"stage{i + 1}"] = x
        return x, features


_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

for _depth, (_block, _depths) in _DEPTHS.items():
    registry.register(
        f"resnet{_depth}",
        ResNet,
        default_size=224,
        block=_block,
        depths=_depths,
    )
    if _block == "bottleneck":
        registry.register(
            f"keras_resnet{_depth}",
            ResNet,
            default_size=224,
            aliases=(f"ResNet{_depth}",),
            depths=_depths,
            layout="keras",
            zero_init_last=False,
        )
