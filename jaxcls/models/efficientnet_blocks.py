"""EfficientNet-family blocks and the block-string decoder.

Block strings follow rwightman's notation (gen-efficientnet, timm ``_efficientnet_builder``), e.g.
``'ir_r2_k3_s2_e6_c24_se0.25'``: block type, then options

* ``r`` repeats, ``k`` kernel size, ``s`` stride of the first repeat, ``e`` expansion ratio,
  ``c`` output channels, ``se`` squeeze-excite ratio (relative to the block's input channels);
* ``skip`` / ``noskip`` force the residual on or off; ``nre`` / ``nr6`` / ``nsw`` / ``nhs`` override
  the activation (relu, relu6, swish, hard_swish) for that block.

Block types (names of the timm modules in parentheses, parameter names follow them):

* ``ds`` depthwise-separable (``DepthwiseSeparableConv``): conv_dw -> bn1 -> act -> [se] -> conv_pw
  -> bn2 (no act); ``dsa`` adds an activation after bn2 and never has a skip.
* ``ir`` inverted residual / MBConv (``InvertedResidual``; Sandler et al. 2018, Tan & Le 2019):
  conv_pw (1x1 expand) -> bn1 -> act -> conv_dw (k, stride) -> bn2 -> act -> [se] -> conv_pwl (1x1)
  -> bn3.
* ``er`` edge residual / Fused-MBConv (``EdgeResidual``; Tan & Le 2021, EfficientNetV2): conv_exp
  (k, stride, expand) -> bn1 -> act -> [se] -> conv_pwl (1x1) -> bn2.
* ``cn`` conv-bn-act (``ConvBnAct``): conv (k, stride) -> bn1 -> act, residual only with ``skip``.

The residual (with drop-path) is used when stride is 1 and channels are unchanged, unless disabled.
"""

from __future__ import annotations

import dataclasses
import re

from flax import nnx

from jaxcls.models import layers

_ACT_OVERRIDES = {"re": "relu", "r6": "relu6", "sw": "silu", "hs": "hard_swish"}


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One decoded block-string entry (before repeat expansion)."""

    block_type: str
    repeats: int
    kernel: int
    stride: int
    exp_ratio: float
    out_chs: int
    se_ratio: float = 0.0
    skip: bool | None = None  # None: residual where shapes allow; True/False: forced
    act: str | None = None  # None: the model's activation


def decode_block(block_str: str) -> BlockArgs:
    """Parses one block string such as ``'ir_r2_k3_s2_e6_c24_se0.25'``."""
    ops = block_str.split("_")
    block_type, ops = ops[0], ops[1:]
    if block_type not in ("ds", "dsa", "ir", "er", "cn"):
        raise ValueError(f"unknown block type {block_type!r} in {block_str!r}")
    opts: dict[str, str] = {}
    skip = None
    act = None
    for op in ops:
        if op == "noskip":
            skip = False
        elif op == "skip":
            skip = True
        elif op.startswith("n"):
            if op[1:] not in _ACT_OVERRIDES:
                raise ValueError(f"unknown activation option {op!r} in {block_str!r}")
            act = _ACT_OVERRIDES[op[1:]]
        else:
            key, value, *_ = re.split(r"(\d.*)", op)
            opts[key] = value
    missing = [k for k in ("r", "k", "s", "c") if k not in opts]
    if missing:
        raise ValueError(f"block string {block_str!r} lacks option(s) {missing}")
    if block_type == "dsa":
        skip = False
    return BlockArgs(
        block_type=block_type,
        repeats=int(opts["r"]),
        kernel=int(opts["k"]),
        stride=int(opts["s"]),
        exp_ratio=float(opts.get("e", 1.0)),
        out_chs=int(opts["c"]),
        se_ratio=float(opts.get("se", 0.0)),
        skip=skip,
        act=act,
    )


def _scale_stage_depth(stage: list[BlockArgs], multiplier: float) -> list[int]:
    """Ceil-scales a stage's total repeats and spreads them over its block defs (timm rule)."""
    repeats = [b.repeats for b in stage]
    total = sum(repeats)
    total_scaled = layers.round_repeats(total, multiplier)
    scaled = []
    for r in repeats[::-1]:
        rs = max(1, round(r / total * total_scaled))
        scaled.append(rs)
        total -= r
        total_scaled -= rs
    return scaled[::-1]


def decode_arch(
    arch_def: list[list[str]], depth_multiplier: float = 1.0, fix_first_last: bool = False
) -> list[list[BlockArgs]]:
    """Decodes stages of block strings and applies depth scaling (ceil), repeats expanded.

    Returns one list per stage with one ``BlockArgs`` per block (``repeats`` set to 1, stride kept
    only on each def's first block). ``fix_first_last`` leaves the first and last stages unscaled
    (EfficientNet-Lite, MobileNetV2 with a fixed stem/head).
    """
    stages = []
    for i, stage_strs in enumerate(arch_def):
        stage = [decode_block(s) for s in stage_strs]
        fixed = fix_first_last and (i == 0 or i == len(arch_def) - 1)
        counts = (
            [b.repeats for b in stage] if fixed else _scale_stage_depth(stage, depth_multiplier)
        )
        blocks = []
        for b, n in zip(stage, counts):
            for j in range(n):
                blocks.append(dataclasses.replace(b, repeats=1, stride=b.stride if j == 0 else 1))
        stages.append(blocks)
    return stages


class _Residual(nnx.Module):
    """Shared residual/drop-path handling."""

    def _init_residual(self, in_chs, out_chs, stride, skip, drop_path, rngs, default_skip=True):
        allowed = stride == 1 and in_chs == out_chs
        self.has_skip = allowed and (default_skip if skip is None else skip)
        use_dp = self.has_skip and drop_path > 0
        self.drop_path = layers.DropPath(drop_path, rngs=rngs) if use_dp else None

    def _residual(self, y, x, train):
        if not self.has_skip:
            return y
        if self.drop_path is not None:
            y = self.drop_path(y, train=train)
        return y + x


class DepthwiseSeparable(_Residual):
    """'ds'/'dsa' block (timm ``DepthwiseSeparableConv``)."""

    def __init__(self, in_chs, args: BlockArgs, *, c, drop_path, rngs):
        out_chs = c.round(args.out_chs)
        self.act = args.act or c.act
        self.pw_act = args.block_type == "dsa"
        self.conv_dw = layers.DepthwiseConv2d(
            in_chs, args.kernel, stride=args.stride, padding=c.padding, impl=c.dw_impl,
            dtype=c.dtype, rngs=rngs,
        )  # fmt: skip
        self.bn1 = c.bn(in_chs, rngs)
        self.se = c.se(in_chs, args, self.act, rngs)
        self.conv_pw = layers.Conv2d(in_chs, out_chs, 1, dtype=c.dtype, rngs=rngs)
        self.bn2 = c.bn(out_chs, rngs)
        self._init_residual(in_chs, out_chs, args.stride, args.skip, drop_path, rngs)
        self.out_chs = out_chs

    def __call__(self, x, *, train: bool):
        act, ura = layers.get_act(self.act), not train
        # bn1's moments from the depthwise kernel where bn1 would sum its input (training).
        wanted = self.bn1.takes_moments(x, use_running_average=ura)
        y, moments = self.conv_dw.with_moments(x) if wanted else (self.conv_dw(x), None)
        y = self.bn1.activated(y, self.act, use_running_average=ura, moments=moments)
        if self.se is not None:
            y = self.se(y, train=train)
        y = self.bn2(self.conv_pw(y), use_running_average=ura)
        if self.pw_act:
            y = act(y)
        return self._residual(y, x, train)


class InvertedResidual(_Residual):
    """'ir' block, MBConv (timm ``InvertedResidual``)."""

    def __init__(self, in_chs, args: BlockArgs, *, c, drop_path, rngs):
        out_chs = c.round(args.out_chs)
        mid_chs = layers.make_divisible(in_chs * args.exp_ratio)
        self.act = args.act or c.act
        self.conv_pw = layers.Conv2d(in_chs, mid_chs, 1, dtype=c.dtype, rngs=rngs)
        self.bn1 = c.bn(mid_chs, rngs)
        self.conv_dw = layers.DepthwiseConv2d(
            mid_chs, args.kernel, stride=args.stride, padding=c.padding, impl=c.dw_impl,
            dtype=c.dtype, rngs=rngs,
        )  # fmt: skip
        self.bn2 = c.bn(mid_chs, rngs)
        self.se = c.se(mid_chs, args, self.act, rngs)
        self.conv_pwl = layers.Conv2d(mid_chs, out_chs, 1, dtype=c.dtype, rngs=rngs)
        self.bn3 = c.bn(out_chs, rngs)
        self._init_residual(in_chs, out_chs, args.stride, args.skip, drop_path, rngs)
        self.out_chs = out_chs

    def __call__(self, x, *, train: bool):
        ura = not train
        # bn2's moments from the depthwise kernel where bn2 would sum its input (training).
        y, moments = self.bn1.expanded_depthwise(
            x, self.conv_pw, self.act, self.conv_dw, use_running_average=ura,
            moments=self.bn2.takes_moments(x, use_running_average=ura),
        )  # fmt: skip
        y = self.bn2.activated(y, self.act, use_running_average=ura, moments=moments)
        if self.se is not None:
            y = self.se(y, train=train)
        y = self.bn3(self.conv_pwl(y), use_running_average=ura)
        return self._residual(y, x, train)


class EdgeResidual(_Residual):
    """'er' block, Fused-MBConv (timm ``EdgeResidual``)."""

    def __init__(self, in_chs, args: BlockArgs, *, c, drop_path, rngs):
        out_chs = c.round(args.out_chs)
        mid_chs = layers.make_divisible(in_chs * args.exp_ratio)
        self.act = args.act or c.act
        self.conv_exp = layers.Conv2d(
            in_chs, mid_chs, args.kernel, stride=args.stride, padding=c.padding, dtype=c.dtype,
            rngs=rngs,
        )  # fmt: skip
        self.bn1 = c.bn(mid_chs, rngs)
        self.se = c.se(mid_chs, args, self.act, rngs)
        self.conv_pwl = layers.Conv2d(mid_chs, out_chs, 1, dtype=c.dtype, rngs=rngs)
        self.bn2 = c.bn(out_chs, rngs)
        self._init_residual(in_chs, out_chs, args.stride, args.skip, drop_path, rngs)
        self.out_chs = out_chs

    def __call__(self, x, *, train: bool):
        ura = not train
        y = self.bn1.activated(self.conv_exp(x), self.act, use_running_average=ura)
        if self.se is not None:
            y = self.se(y, train=train)
        y = self.bn2(self.conv_pwl(y), use_running_average=ura)
        return self._residual(y, x, train)


class ConvBnAct(_Residual):
    """'cn' block (timm ``ConvBnAct``): a single conv, residual only when forced by ``skip``."""

    def __init__(self, in_chs, args: BlockArgs, *, c, drop_path, rngs):
        out_chs = c.round(args.out_chs)
        self.act = args.act or c.act
        self.conv = layers.Conv2d(
            in_chs, out_chs, args.kernel, stride=args.stride, padding=c.padding, dtype=c.dtype,
            rngs=rngs,
        )  # fmt: skip
        self.bn1 = c.bn(out_chs, rngs)
        self._init_residual(
            in_chs, out_chs, args.stride, args.skip, drop_path, rngs, default_skip=False
        )
        self.out_chs = out_chs

    def __call__(self, x, *, train: bool):
        y = self.bn1.activated(self.conv(x), self.act, use_running_average=not train)
        return self._residual(y, x, train)


BLOCKS = {
    "ds": DepthwiseSeparable,
    "dsa": DepthwiseSeparable,
    "ir": InvertedResidual,
    "er": EdgeResidual,
    "cn": ConvBnAct,
}


@dataclasses.dataclass(frozen=True)
class BlockContext:
    """Model-wide settings every block needs (activation, padding, BN, width rounding, dtype)."""

    act: str
    padding: str
    bn_eps: float
    bn_momentum: float
    dw_impl: str
    dtype: object
    channel_multiplier: float = 1.0
    round_limit: float = 0.9

    def round(self, chs: int) -> int:
        return layers.round_channels(chs, self.channel_multiplier, round_limit=self.round_limit)

    def bn(self, chs: int, rngs: nnx.Rngs) -> layers.BatchNorm:
        return layers.batch_norm(
            chs, eps=self.bn_eps, momentum=self.bn_momentum, dtype=self.dtype, rngs=rngs
        )

    def se(self, chs: int, args: BlockArgs, act: str, rngs: nnx.Rngs):
        """SE on ``chs`` channels, reduced to (block input channels * se_ratio); None without SE."""
        if not args.se_ratio:
            return None
        # timm: rd = round(mid * se_ratio / exp_ratio), i.e. relative to the block input.
        exp = args.exp_ratio if args.block_type in ("ir", "er") else 1.0
        rd = round(chs * args.se_ratio / exp)
        return layers.SqueezeExcite(chs, rd, act=act, dtype=self.dtype, rngs=rngs)


def build_block(in_chs: int, args: BlockArgs, *, c: BlockContext, drop_path: float, rngs):
    """Instantiates the block class for ``args.block_type``."""
    return BLOCKS[args.block_type](in_chs, args, c=c, drop_path=drop_path, rngs=rngs)
