"""DenseNet (Huang et al., CVPR 2017, "Densely Connected Convolutional Networks").

Layout of torchvision / timm ``densenet.py`` (``densenet121/169/201``), which is also the layout of
``keras.applications.DenseNet121/169/201`` (same trainable parameters; Keras uses BatchNorm eps
1.001e-5 where torchvision uses 1e-5, an option here):

* Stem: 7x7 stride-2 conv (64 = 2 x growth rate, no bias) -> BN -> ReLU -> 3x3 stride-2 max pool.
* Dense blocks of ``DenseLayer``: BN-ReLU -> 1x1 conv (``bn_size * growth_rate``) -> BN-ReLU ->
  3x3 conv (``growth_rate``) [-> dropout ``proj_drop_rate``]; every layer sees the concatenation of
  the block input and all previous layers' outputs.
* Transitions between blocks: BN-ReLU -> 1x1 conv halving the channels -> 2x2 stride-2 avg pool
  (run as pool, then conv: the same function, `layers.avg_pool_pointwise`).
* A final BN + ReLU (``norm5``), global average pool, dropout (``drop_rate``), classifier.

timm 1.0.31 at 1000 classes: densenet121 = 7,978,856, densenet169 = 14,149,480,
densenet201 = 20,013,928.

Features: 'stem' (after the max pool), 'stage1'..'stage4' (stage K = transition K-1 then dense block
K; 'stage4' includes ``norm5`` + ReLU, Keras' final 'relu', the Grad-CAM layer), 'pre_logits'.
Parameter paths keep timm's layer names: ``stages/0/layers/3/conv2/kernel``,
``stages/1/transition/conv/kernel``, ``norm5/scale``.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import batch_stats, heads, layers, registry


class DenseLayer(nnx.Module):
    """BN-ReLU-conv1x1 (bottleneck) -> BN-ReLU-conv3x3 (growth_rate new channels)."""

    def __init__(self, cin, growth_rate, bn_size, *, drop_rate, bn, dtype, rngs):
        mid = bn_size * growth_rate
        self.norm1 = layers.batch_norm(cin, **bn, dtype=dtype, rngs=rngs)
        self.conv1 = layers.Conv2d(cin, mid, 1, dtype=dtype, rngs=rngs)
        self.norm2 = layers.batch_norm(mid, **bn, dtype=dtype, rngs=rngs)
        self.conv2 = layers.Conv2d(mid, growth_rate, 3, dtype=dtype, rngs=rngs)
        self.drop = layers.dropout(drop_rate, rngs=rngs)

    def __call__(self, x, *, train: bool, moments=None):
        """The layer's new channels; ``moments``: ``x``'s (`DenseStage.forward`), or None."""
        ura = not train
        y = self.conv1(self.norm1.activated(x, "relu", use_running_average=ura, moments=moments))
        y = self.conv2(self.norm2.activated(y, "relu", use_running_average=ura))
        return self.drop(y, deterministic=not train)


# In inference a dense block writes each layer's new channels into one buffer of the block's final
# width, and each layer reads the leading channels of it, instead of concatenating (a copy of every
# channel so far per layer). 1.03x in the forward pass at batch 1 and 32 on CPU. Not in training,
# where the buffer's gradient costs more than the copies save (the train step 0.91x).
BLOCK_BUFFER = True
# In training, where BatchNorm sums its input natively, a dense block sums each layer's new
# channels once and hands every later layer's first BatchNorm (and the transition's, and norm5)
# the moments of its whole input, concatenated as the channels are, instead of each summing the
# whole concatenation again (`batch_stats.normalize_act_train`'s ``moments``): the same sums, so
# the same result to the bit. tools/bench_ab.py --variant=densenet_moments_unshared turns it off.
SHARED_MOMENTS = True


class Transition(nnx.Module):
    """BN-ReLU -> 1x1 conv (halves the channels) -> 2x2 stride-2 average pool, computed as BN-ReLU
    -> pool -> conv (`layers.avg_pool_pointwise`)."""

    def __init__(self, cin, cout, *, bn, dtype, rngs):
        self.norm = layers.batch_norm(cin, **bn, dtype=dtype, rngs=rngs)
        self.conv = layers.Conv2d(cin, cout, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x, *, train: bool, moments=None):
        x = self.norm.activated(x, "relu", use_running_average=not train, moments=moments)
        return layers.avg_pool_pointwise(x, self.conv, 2, 2, "valid", conv_first=True)


class DenseStage(nnx.Module):
    """An optional transition followed by a dense block."""

    def __init__(
        self, cin, num_layers, growth_rate, bn_size, *, transition, drop_rate, bn, dtype, rngs
    ):
        self.transition = (
            Transition(cin, cin // 2, bn=bn, dtype=dtype, rngs=rngs) if transition else None
        )
        cin = cin // 2 if transition else cin
        self.layers = nnx.List(
            [
                DenseLayer(
                    cin + i * growth_rate,
                    growth_rate,
                    bn_size,
                    drop_rate=drop_rate,
                    bn=bn,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(num_layers)
            ]
        )
        self.out_features = cin + num_layers * growth_rate

    def __call__(self, x, *, train: bool):
        return self.forward(x, train=train)[0]

    def forward(self, x, *, train: bool, moments=None):
        """``(output, its channel moments)``: ``moments`` are ``x``'s where shared
        (``SHARED_MOMENTS``; `batch_stats.channel_moments`, for the transition), and the
        output's are returned for the next stage's transition or norm5, else None."""
        if self.transition is not None:
            x = self.transition(x, train=train, moments=moments)
        if BLOCK_BUFFER and not train:
            return self._into_buffer(x), None
        first = self.layers[0].norm1
        share = SHARED_MOMENTS and first.takes_moments(x, use_running_average=not train)
        moments = batch_stats.channel_moments(x) if share else None
        for layer in self.layers:
            y = layer(x, train=train, moments=moments)
            if share:
                new = batch_stats.channel_moments(y)
                moments = tuple(jnp.concatenate(pair) for pair in zip(moments, new))
            # What torchvision does too; XLA runs each as a copy of its own.
            x = jnp.concatenate([x, y], axis=-1)
        return x, moments

    def _into_buffer(self, x):
        """The block in inference: each layer's channels written in place after its input's."""
        width = x.shape[-1]
        x = jnp.pad(x, ((0, 0),) * 3 + ((0, self.out_features - width),))
        for layer in self.layers:
            y = layer(jax.lax.slice_in_dim(x, 0, width, axis=3), train=False)
            x = jax.lax.dynamic_update_slice_in_dim(x, y, width, axis=3)
            width += y.shape[-1]
        return x


class DenseNet(nnx.Module):
    """DenseNet-BC with the ImageNet stem; see the module docstring."""

    def __init__(
        self,
        *,
        num_classes: int,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        bn_size: int = 4,
        bn_eps: float = 1e-5,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        head: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        head_pool: str = "avg",
        input_size: int | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        bn = dict(eps=bn_eps)
        self.dtype = dtype
        self.default_cam_layer = f"stage{len(block_config)}"
        stem_width = 2 * growth_rate
        self.stem = layers.ConvNormAct(
            in_chans, stem_width, 7, stride=2, bn_eps=bn_eps, dtype=dtype, rngs=rngs
        )
        cin = stem_width
        stages = []
        for i, num_layers in enumerate(block_config):
            stage = DenseStage(
                cin,
                num_layers,
                growth_rate,
                bn_size,
                transition=i > 0,
                drop_rate=proj_drop_rate,
                bn=bn,
                dtype=dtype,
                rngs=rngs,
            )
            stages.append(stage)
            cin = stage.out_features
        self.stages = nnx.List(stages)
        self.norm5 = layers.batch_norm(cin, **bn, dtype=dtype, rngs=rngs)
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
        x = self.stem.max_pooled(x.astype(self.dtype), 3, 2, "symmetric", train=train)
        features["stem"] = x
        n, moments = len(self.stages), None
        for i, stage in enumerate(self.stages):
            x, moments = stage.forward(x, train=train, moments=moments)
            if i == n - 1:
                x = self.norm5.activated(x, "relu", use_running_average=not train, moments=moments)
            features[f"stage{i + 1}"] = x
        return x, features


for _depth, _blocks in {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}.items():
    registry.register(
        f"densenet{_depth}",
        DenseNet,
        default_size=224,
        aliases=(f"DenseNet{_depth}",),
        block_config=_blocks,
    )
