"""VGG (Simonyan & Zisserman, ICLR 2015, "Very Deep Convolutional Networks"), timm ``vgg.py`` layout.

* Five blocks of 3x3 convs (with bias; ``_bn`` variants add BatchNorm after each conv) + ReLU, each
  block followed by a 2x2 stride-2 max pool. Widths 64-128-256-512-512.
* timm's head is a ``ConvMlp`` pre-logits module: ``fc1`` a 7x7 conv 512 -> 4096 (no padding) +
  ReLU + dropout, ``fc2`` a 1x1 conv 4096 -> 4096 + ReLU, then global average pooling, dropout and
  the classifier. At 224 px the 7x7 conv sees exactly the 7x7 map, so this is torchvision's / Keras'
  ``Flatten -> Dense(4096) -> Dense(4096)`` with the same parameters (a Keras ``Dense`` kernel
  ``(7*7*512, 4096)`` is this HWIO kernel reshaped, since Keras flattens NHWC), but it also runs at
  other resolutions: a map smaller than 7x7 is first adaptive-average-pooled up to 7x7 (timm).
* Dropout ``drop_rate`` (timm default 0; torchvision trains with 0.5) after fc1 and before the head.

timm 1.0.31 at 1000 classes: vgg16 = 138,357,544, vgg19 = 143,667,240 (Keras VGG16/VGG19 equal),
vgg16_bn = 138,365,992. Conv kernels use He fan-out normal init, as timm.

Features: 'stem' (the first conv), 'stage1'..'stage5' (stage 1 = the rest of block 1; stage K > 1 =
the previous block's max pool then block K's convs, so each stage ends at the block's last conv,
e.g. Keras 'block5_conv3', the usual Grad-CAM layer), 'pre_logits' (pooled ``fc2`` output, 4096).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry

CFGS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class ConvBlock(nnx.Module):
    """3x3 conv (bias) [-> BatchNorm] -> ReLU."""

    def __init__(self, cin, cout, *, batch_norm, dtype, rngs):
        self.conv = layers.Conv2d(cin, cout, 3, use_bias=True, dtype=dtype, rngs=rngs)
        self.bn = layers.batch_norm(cout, dtype=dtype, rngs=rngs) if batch_norm else None

    def conv_out(self, x):
        """The unit's convolution."""
        return self.conv(x)

    def __call__(self, x, *, train: bool):
        x = self.conv(x)
        if self.bn is not None:
            return self.bn.activated(x, "relu", use_running_average=not train)
        return jax.nn.relu(x)


def adaptive_avg_pool(x: jax.Array, out_h: int, out_w: int) -> jax.Array:
    """PyTorch ``adaptive_avg_pool2d`` of an NHWC map: bin i covers [floor(i*n/o), ceil((i+1)*n/o))."""

    def matrix(n, o):
        rows = []
        for i in range(o):
            lo, hi = (i * n) // o, -(-((i + 1) * n) // o)
            rows.append([1.0 / (hi - lo) if lo <= j < hi else 0.0 for j in range(n)])
        return jnp.asarray(rows, x.dtype)

    return jnp.einsum("bhwc,oh,pw->bopc", x, matrix(x.shape[1], out_h), matrix(x.shape[2], out_w))


class ConvMlp(nnx.Module):
    """timm ``ConvMlp``: fc1 (k x k conv) -> ReLU -> dropout -> fc2 (1x1 conv) -> ReLU."""

    def __init__(self, cin, hidden, kernel_size, *, drop_rate, dtype, rngs):
        self.kernel_size = kernel_size
        kw = dict(use_bias=True, padding="valid", dtype=dtype, rngs=rngs)
        self.fc1 = layers.Conv2d(cin, hidden, kernel_size, **kw)
        self.drop = layers.dropout(drop_rate, rngs=rngs)
        self.fc2 = layers.Conv2d(hidden, hidden, 1, **kw)

    def __call__(self, x, *, train: bool):
        k = self.kernel_size
        if x.shape[1] < k or x.shape[2] < k:
            x = adaptive_avg_pool(x, max(k, x.shape[1]), max(k, x.shape[2]))
        x = self.drop(jax.nn.relu(self.fc1(x)), deterministic=not train)
        return jax.nn.relu(self.fc2(x))


class VGG(nnx.Module):
    """VGG with timm's ConvMlp head; see the module docstring."""

    def __init__(
        self,
        *,
        num_classes: int,
        cfg: tuple[tuple[int, ...], ...] = CFGS[16],
        batch_norm: bool = False,
        mlp_hidden: int = 4096,
        drop_rate: float = 0.0,
        head: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        head_pool: str = "avg",
        input_size: int | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if not cfg or not cfg[0]:
            raise ValueError(f"cfg needs at least one block with one conv, got {cfg}")
        self.dtype = dtype
        self.default_cam_layer = f"stage{len(cfg)}"
        kw = dict(batch_norm=batch_norm, dtype=dtype, rngs=rngs)
        self.stem = ConvBlock(in_chans, cfg[0][0], **kw)
        cin = cfg[0][0]
        stages = []
        for i, widths in enumerate(cfg):
            blocks = []
            for cout in widths[1:] if i == 0 else widths:
                blocks.append(ConvBlock(cin, cout, **kw))
                cin = cout
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.pre_logits = ConvMlp(cin, mlp_hidden, 7, drop_rate=drop_rate, dtype=dtype, rngs=rngs)
        heads.attach(
            self,
            mlp_hidden,
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
        """The backbone: the map the head pools, and the features without 'pre_logits'.

        Each block's last conv unit and the max pool after it run as `layers.unit_max_pooled`:
        in training the ReLU on the pooled map and BatchNorm inside the pool (the same values
        and gradients, less memory traffic), as written in evaluation (the stage maps Grad-CAM
        differentiates against stay on the logits' path)."""

        def run_unit(blk, x, last):
            if not last:
                return blk(x, train=train), None
            return layers.unit_max_pooled(blk, x, 2, 2, "valid", act="relu", train=train)

        pooled, features = layers.pooled_blocks(
            [[self.stem, *self.stages[0]], *self.stages[1:]], x.astype(self.dtype), run_unit
        )
        return self.pre_logits(pooled, train=train), features


for _depth, _cfg in CFGS.items():
    keras = (f"VGG{_depth}",) if _depth in (16, 19) else ()
    registry.register(f"vgg{_depth}", VGG, default_size=224, aliases=keras, cfg=_cfg)
    registry.register(f"vgg{_depth}_bn", VGG, default_size=224, cfg=_cfg, batch_norm=True)
