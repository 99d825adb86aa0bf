"""EfficientNet, EfficientNet-Lite, EfficientNetV2 and MobileNetV2 from block strings.

One model class (timm ``EfficientNet``) builds every member of the family from an architecture
definition - a list of stages, each a list of block strings decoded by
:mod:`jaxcls.models.efficientnet_blocks` - and a few scalars:

* EfficientNet B0-B7 (Tan & Le, ICML 2019): width/depth multipliers (round_channels with divisor 8,
  ceil depth rounding), SiLU, SE 0.25 relative to the block input, drop-path linear in the block
  index (timm: ``rate * idx / num_blocks``), dropout before the classifier.
* ``efficientnet_*`` are the PyTorch-trained timm variants (symmetric padding, BN eps 1e-5,
  momentum 0.9 in Flax terms); ``tf_efficientnet_*`` are the TF-origin ones (TF 'SAME' padding,
  eps 1e-3, momentum 0.99) and are the architecture of Keras ``EfficientNetB*`` (same trainable
  parameters; Keras' in-model rescaling/normalisation is not part of the model here).
* EfficientNet-Lite (TF model garden): ReLU6, no SE, stem 32 and head 1280 fixed, first and last
  stage depths not scaled.
* MobileNetV2 (Sandler et al., CVPR 2018): ReLU6, no SE, head ``max(1280, round(1280 * m))``.
* EfficientNetV2 (Tan & Le, ICML 2021): fused 'cn'/'er' blocks in the early stages, SE in 'ir'
  blocks; the B0-B3 variants round channels with ``round_limit=0``.

Features: 'stem' (after the stem conv+BN+act), 'stage1'..'stageN' (one per arch-def row) and a last
stage 'stage{N+1}' that is the 1x1 ``conv_head`` output (Keras' 'top_activation', the usual Grad-CAM
layer and ``default_cam_layer``), then 'pre_logits' (global average pool of it).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import heads, layers, registry
from jaxcls.models.efficientnet_blocks import BlockContext, build_block, decode_arch

ARCH_DEFS: dict[str, tuple[tuple[str, ...], ...]] = {
    "efficientnet": (
        ("ds_r1_k3_s1_e1_c16_se0.25",),
        ("ir_r2_k3_s2_e6_c24_se0.25",),
        ("ir_r2_k5_s2_e6_c40_se0.25",),
        ("ir_r3_k3_s2_e6_c80_se0.25",),
        ("ir_r3_k5_s1_e6_c112_se0.25",),
        ("ir_r4_k5_s2_e6_c192_se0.25",),
        ("ir_r1_k3_s1_e6_c320_se0.25",),
    ),
    "efficientnet_lite": (
        ("ds_r1_k3_s1_e1_c16",),
        ("ir_r2_k3_s2_e6_c24",),
        ("ir_r2_k5_s2_e6_c40",),
        ("ir_r3_k3_s2_e6_c80",),
        ("ir_r3_k5_s1_e6_c112",),
        ("ir_r4_k5_s2_e6_c192",),
        ("ir_r1_k3_s1_e6_c320",),
    ),
    "mobilenetv2": (
        ("ds_r1_k3_s1_c16",),
        ("ir_r2_k3_s2_e6_c24",),
        ("ir_r3_k3_s2_e6_c32",),
        ("ir_r4_k3_s2_e6_c64",),
        ("ir_r3_k3_s1_e6_c96",),
        ("ir_r3_k3_s2_e6_c160",),
        ("ir_r1_k3_s1_e6_c320",),
    ),
    "efficientnetv2_base": (
        ("cn_r1_k3_s1_e1_c16_skip",),
        ("er_r2_k3_s2_e4_c32",),
        ("er_r2_k3_s2_e4_c48",),
        ("ir_r3_k3_s2_e4_c96_se0.25",),
        ("ir_r5_k3_s1_e6_c112_se0.25",),
        ("ir_r8_k3_s2_e6_c192_se0.25",),
    ),
    "efficientnetv2_s": (
        ("cn_r2_k3_s1_e1_c24_skip",),
        ("er_r4_k3_s2_e4_c48",),
        ("er_r4_k3_s2_e4_c64",),
        ("ir_r6_k3_s2_e4_c128_se0.25",),
        ("ir_r9_k3_s1_e6_c160_se0.25",),
        ("ir_r15_k3_s2_e6_c256_se0.25",),
    ),
    "efficientnetv2_m": (
        ("cn_r3_k3_s1_e1_c24_skip",),
        ("er_r5_k3_s2_e4_c48",),
        ("er_r5_k3_s2_e4_c80",),
        ("ir_r7_k3_s2_e4_c160_se0.25",),
        ("ir_r14_k3_s1_e6_c176_se0.25",),
        ("ir_r18_k3_s2_e6_c304_se0.25",),
        ("ir_r5_k3_s1_e6_c512_se0.25",),
    ),
    "efficientnetv2_l": (
        ("cn_r4_k3_s1_e1_c32_skip",),
        ("er_r7_k3_s2_e4_c64",),
        ("er_r7_k3_s2_e4_c96",),
        ("ir_r10_k3_s2_e4_c192_se0.25",),
        ("ir_r19_k3_s1_e6_c224_se0.25",),
        ("ir_r25_k3_s2_e6_c384_se0.25",),
        ("ir_r7_k3_s1_e6_c640_se0.25",),
    ),
}

HEAD_RULES = ("scale", "fixed", "scale_min")


class EfficientNet(nnx.Module):
    """conv_stem -> stages of blocks -> conv_head (1x1) -> global pool -> dropout -> head."""

    def __init__(
        self,
        *,
        num_classes: int,
        arch: str | Sequence[Sequence[str]] = "efficientnet",
        channel_multiplier: float = 1.0,
        depth_multiplier: float = 1.0,
        round_limit: float = 0.9,
        stem_size: int = 32,
        fix_stem: bool = False,
        num_features: int = 1280,
        head_rule: str = "scale",
        fix_first_last: bool = False,
        act: str = "silu",
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.9,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        dw_impl: str = "auto",
        head: tuple[int, ...] = (),
        head_dropout: float = 0.0,
        head_pool: str = "avg",
        input_size: int | None = None,
        in_chans: int = 3,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        arch_def = ARCH_DEFS[arch] if isinstance(arch, str) else arch
        if head_rule not in HEAD_RULES:
            raise ValueError(f"head_rule must be one of {HEAD_RULES}, got {head_rule!r}")
        layers.get_act(act)
        self.dtype = dtype
        c = BlockContext(
            act=act,
            padding=padding,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
            dw_impl=dw_impl,
            dtype=dtype,
            channel_multiplier=channel_multiplier,
            round_limit=round_limit,
        )
        stem_chs = stem_size if fix_stem else c.round(stem_size)
        conv_kw = dict(
            act=act, padding=padding, bn_eps=bn_eps, bn_momentum=bn_momentum, dtype=dtype, rngs=rngs
        )
        self.stem = layers.ConvNormAct(in_chans, stem_chs, 3, stride=2, **conv_kw)

        stages_args = decode_arch([list(s) for s in arch_def], depth_multiplier, fix_first_last)
        total = sum(len(s) for s in stages_args)
        idx, cin, stages = 0, stem_chs, []
        for stage_args in stages_args:
            blocks = []
            for args in stage_args:
                dpr = drop_path_rate * idx / total
                blk = build_block(cin, args, c=c, drop_path=dpr, rngs=rngs)
                blocks.append(blk)
                cin = blk.out_chs
                idx += 1
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)

        if head_rule == "fixed":
            head_chs = num_features
        elif head_rule == "scale":
            head_chs = c.round(num_features)
        else:
            head_chs = max(num_features, c.round(num_features))
        self.conv_head = layers.ConvNormAct(cin, head_chs, 1, **conv_kw)
        self.default_cam_layer = f"stage{len(stages) + 1}"
        heads.attach(
            self,
            head_chs,
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
        x = self.stem(x.astype(self.dtype), train=train)
        features["stem"] = x
        for i, stage in enumerate(self.stages):
            for blk in stage:
                x = blk(x, train=train)
            features[f"stage{i + 1}"] = x
        x = self.conv_head(x, train=train)
        features[f"stage{len(self.stages) + 1}"] = x
        return x, features


# PyTorch-trained timm variants vs TF-origin ones (the Keras/TF checkpoints).
_TORCH = dict(padding="symmetric", bn_eps=1e-5, bn_momentum=0.9)
_TF = dict(padding="same_tf", bn_eps=1e-3, bn_momentum=0.99)

# name: (channel multiplier, depth multiplier, resolution, dropout) - Tan & Le 2019, Table / timm.
_EFFNET = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
for _v, (_cm, _dm, _res, _drop) in _EFFNET.items():
    _kw = dict(arch="efficientnet", channel_multiplier=_cm, depth_multiplier=_dm, drop_rate=_drop)
    registry.register(f"efficientnet_{_v}", EfficientNet, default_size=_res, **_kw, **_TORCH)
    registry.register(
        f"tf_efficientnet_{_v}",
        EfficientNet,
        default_size=_res,
        aliases=(f"EfficientNet{_v.upper()}",),
        **_kw,
        **_TF,
    )

_LITE = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}
for _v, (_cm, _dm, _res, _drop) in _LITE.items():
    _kw = dict(arch="efficientnet_lite", channel_multiplier=_cm, depth_multiplier=_dm,
               drop_rate=_drop, act="relu6", fix_stem=True, head_rule="fixed",
               fix_first_last=True)  # fmt: skip
    registry.register(f"efficientnet_{_v}", EfficientNet, default_size=_res, **_kw, **_TORCH)
    # The TF-trained Lite checkpoints (timm's tf_efficientnet_lite*): 'SAME' padding, eps 1e-3.
    registry.register(f"tf_efficientnet_{_v}", EfficientNet, default_size=_res, **_kw, **_TF)

for _name, _cm, _alias in (
    ("mobilenetv2_100", 1.0, ("MobileNetV2",)),
    ("mobilenetv2_140", 1.4, ()),
):
    registry.register(
        _name,
        EfficientNet,
        default_size=224,
        aliases=_alias,
        arch="mobilenetv2",
        channel_multiplier=_cm,
        act="relu6",
        head_rule="scale_min",
        drop_rate=0.2,
        drop_path_rate=0.0,
        **_TORCH,
    )

# EfficientNetV2 (TF-origin weights: 'SAME' padding, eps 1e-3). Resolution = eval size.
_V2 = {
    "s": ("efficientnetv2_s", 1.0, 1.0, 24, 384, 0.2, 0.9, ("EfficientNetV2S",)),
    "m": ("efficientnetv2_m", 1.0, 1.0, 24, 480, 0.3, 0.9, ("EfficientNetV2M",)),
    "l": ("efficientnetv2_l", 1.0, 1.0, 32, 480, 0.4, 0.9, ("EfficientNetV2L",)),
    "b0": ("efficientnetv2_base", 1.0, 1.0, 32, 224, 0.2, 0.0, ("EfficientNetV2B0",)),
    "b1": ("efficientnetv2_base", 1.0, 1.1, 32, 240, 0.2, 0.0, ("EfficientNetV2B1",)),
    "b2": ("efficientnetv2_base", 1.1, 1.2, 32, 260, 0.3, 0.0, ("EfficientNetV2B2",)),
    "b3": ("efficientnetv2_base", 1.2, 1.4, 32, 300, 0.3, 0.0, ("EfficientNetV2B3",)),
}
for _v, (_arch, _cm, _dm, _stem, _res, _drop, _rl, _alias) in _V2.items():
    registry.register(
        f"tf_efficientnetv2_{_v}",
        EfficientNet,
        default_size=_res,
        aliases=_alias,
        arch=_arch,
        channel_multiplier=_cm,
        depth_multiplier=_dm,
        round_limit=_rl,
        stem_size=_stem,
        drop_rate=_drop,
        **_TF,
    )
