"""Padding modes, and dense 2-D convolution with a switchable weight-gradient implementation.

:func:`get_padding` turns a padding mode into explicit per-side padding for every convolution and
pooling layer of the zoo ('same_tf': TensorFlow's dynamic 'SAME', extra pixel bottom/right;
'symmetric': PyTorch/timm's static ``k // 2`` style; 'valid').

Why: on XLA:CPU the forward convolution and its input gradient run at parity with PyTorch, but the
*weight* gradient convolution is 5-14x slower at 32x32 and 16x16 feature maps (measured on the
project's 2-core AVX2 machine, see shared/environment.md), which makes CPU training of ResNets
slower than timm's. The weight gradient of a convolution is, per kernel tap ``(i, j)``, a plain
matrix product::

    dW[i, j] = sum_{b, h, w} x_pad[b, i + s*h, j + s*w, :]^T  g[b, h, w, :]      # (C_in, C_out)

i.e. one ``einsum('bhwc,bhwo->co')`` of a strided slice of the padded input with the output
gradient. XLA:CPU lowers those to its GEMM kernels, which are fast. ``impl='taps'`` keeps XLA's
forward and input gradient and computes the weight gradient this way, inside a ``jax.custom_vjp``;
``impl='xla'`` is plain ``lax.conv_general_dilated`` with autodiff. Both compute the same function
and the same gradients (up to float summation order; tested).

Where it helps (measured here, batch 32, weight gradient only, XLA time / taps time): for 1x1
kernels - every pointwise conv of EfficientNet/MobileNet and two of three convs in a ResNet
bottleneck - the tap form is a single GEMM and wins 2-15x (56x56 64->256: 2.6 s vs 0.18 s; 112x112
96->24: 2.7 s vs 0.38 s; 7x7 2048->512: 2.8x). For 3x3 and 7x7 kernels on maps of 14x14 and larger
XLA's own weight-gradient convolution was as fast or faster (0.6-0.8x), at 7x7 maps about even.
So ``'auto'`` picks 'taps' for 1x1 kernels on the CPU backend (at stride 2: 'native', below) and
'xla' otherwise, and 'xla' everywhere on GPU/TPU (their convolution kernels are fast in all three directions).
``impl='patches'`` computes the whole convolution as one GEMM over gathered patches (the taps'
slices concatenated along channels, then ``[B, Ho, Wo, taps*C] @ [taps*C, O]``), differentiated by
autodiff. XLA:CPU falls off a cliff on convolutions whose *output map* is tiny: a 3x3 'SAME' conv
of 512 channels on a 2x2 map at batch 32 took 276 ms forward (2 GFLOP/s) against 6 ms as stacked taps + one einsum,
and 298 vs 10.5 ms with both gradients; on a 1x1 map the gradients went 7.0 -> 2.4 ms at batch 1;
from 4x4 maps on XLA's own convolution is about as fast (measured on the project's 2-core
machine). ResNets whose last stages land on 1x1-2x2 maps (32-64 px inputs) pay it in every
block. So on CPU ``'auto'`` picks 'patches' for kxk kernels whose output has at most
``PATCHES_MAX_OUTPUT_PIXELS`` (4) pixels. The gather leaves out the taps that see only
padding (:func:`live_taps`): on a 1x1 map a 3x3 conv is one GEMM over its centre tap, 9x fewer
FLOPs, exactly the same result (ResNet-18's train step at 32 px: 1.14x).
``impl='native'`` runs a convolution with 1-4 input channels (``NATIVE_MAX_IN_CHANNELS``: a
network's first layer on RGB or grey images) as C++ kernels (:mod:`jaxcls.native`,
``stem_conv.cc``): the forward pass and the weight gradient; the input gradient is XLA's
transposed convolution, dead code (compiled away) when the input is the network's input. XLA's
convolution works on GEMM panels ``C_in`` wide and ran such a layer at 14-53 GFLOP/s here (the
scratch CNN's 3 -> 16 stem at 32 px: forward + weight gradient 2.9 ms, natively 1.0 ms;
EfficientNet's 224 px stem 44 -> 18 ms; docs/performance.md). On CPU ``'auto'`` picks it for
such layers (after the tiny-map and 1x1 rules) where the kernels could be built; float32 only,
other dtypes use 'xla'. For more input channels 'native' runs ``dense_conv.cc``: the forward pass
register-tiled over pixels x output channels, the input gradient of a stride-1 convolution as
that forward kernel on the flipped kernel, and the weight gradient tiled over input x output
channels; for 3x3 stride-1 calls of enough 2x2 output tiles the forward pass and the weight
gradient as Winograd's F(2x2, 3x3) (:func:`winograd_fits`, ``NATIVE_WINOGRAD``).
On CPU ``'auto'`` picks it for 3x3 stride-1 convolutions with at most ``NATIVE_MAX_CHANNELS``
(256) input and output channels, or at any width where the output of all images together has at
most ``NATIVE_FEW_PIXELS`` (512) pixels (batch-1 inference): forward + both gradients at batch 32 ran 1.2-1.8x faster than
XLA's at 32-64 channels on 8-32 px maps, 0.98-1.16x at 128; at 256 the kernels as tuned on
2026-12-04 ran each direction 0.96-1.10x as fast as XLA's Eigen convolution in two runs (whole
train steps 1.03-1.08x), at 512 0.89-0.94x, where XLA's stays (tools/bench_ops.py --op=conv and --op=kernels; docs/performance.md); and for
every 3x3 or 1x1 stride-2
convolution whose output is not tiny (``NATIVE_STRIDE2``; its input gradient runs the forward
kernel once per output phase, ``NATIVE_STRIDED_INPUT_GRAD``):
1.10-2.44x faster than XLA's 3x3 at 32-512 channels, whose weight gradient first transposes its
input to channels-major, and 1.03-1.64x faster than the 1x1 'taps' form, whose weight gradient
first copies the strided input. A 1x1 stride-1 convolution stays 'taps' (XLA's GEMMs for the
output and the input gradient, which ran 0.4-1.6x as fast natively) but takes its weight gradient
from the native kernel where :func:`pointwise_wgrad_fits` (``NATIVE_POINTWISE_WGRAD``): XLA's
einsum first copies one operand channels-major; with few input channels (at most 48) it takes
both gradients from one native kernel that reads the output gradient once
(:func:`pointwise_bwd_fits`, ``NATIVE_POINTWISE_BWD``). Layers of other kernels or strides keep
'xla' under 'auto'.
:func:`set_conv_impl` overrides the choice (for every kernel and map size) globally or as a
context manager. Grouped (``groups > 1``) and dilated convolutions always use 'xla'.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcls import native

CONV_IMPLS = ("auto", "xla", "taps", "patches", "native")
# Output maps of at most this many pixels use "patches" on CPU (see `resolve_conv_impl`).
PATCHES_MAX_OUTPUT_PIXELS = 4
# Convolutions with at most this many input channels (a stem on RGB or grey images) run as the
# native stem kernels on CPU where those could be built (see `resolve_conv_impl`).
NATIVE_MAX_IN_CHANNELS = 4
# Other 3x3 stride-1 convolutions run as the native dense kernels on CPU where neither channel
# count exceeds NATIVE_MAX_CHANNELS: 256 since the kernels' tuning of 2026-12-04 (train steps at
# 224 px against 128: ResNet-18 1.03-1.04x on one device, 1.08x on two, ResNet-50 1.06x, VGG-11
# 1.03x); at 512 XLA's Eigen convolution stays faster (docs/performance.md, "Tighter kernels").
NATIVE_MAX_CHANNELS = 256
# ... and at any channel count where the call's output, all images together, has at most
# NATIVE_FEW_PIXELS pixels (batch-1 inference's 14x14 and 7x7 maps). A native forward call of at
# most that many output pixels (this device's images) runs as the few-pixels kernel
# (`dense_fwd_kernel`, ForwardFew in dense_conv.cc): it keeps a slice of the weights in L1 for
# all of a task's pixels and reads each weight from memory once, where XLA's Eigen convolution re-reads
# the weights per pixel panel (batch 1, 7x7 512 -> 512 forward: XLA 2.04-2.29 ms, native 1.46;
# the weight gradient 1.17x XLA's; docs/performance.md, "Few output pixels").
NATIVE_FEW_PIXELS = 512
# 3x3 and 1x1 stride-2 convolutions (a stage's first block, a projection shortcut) run as the
# native kernels on CPU at any channel count, except on tiny output maps (forward pass and weight
# gradient; the input gradient: NATIVE_STRIDED_INPUT_GRAD): forward + both gradients 1.10-2.44x
# faster than XLA's 3x3 (whose weight gradient first transposes the input to channels-major)
# and 1.03-1.64x faster than the 1x1 taps einsum (a strided copy of the input first), at 32-2048
# channels on 14-112 px maps (docs/performance.md, "Strided convolutions").
NATIVE_STRIDE2 = True
# The input gradient of such a strided native convolution runs as the native forward kernel too,
# once per output phase (below, `_strided_input_grad`), instead of XLA's transposed convolution:
# at batch 32 on 2 threads 2.4-3.1x faster at 56x56x64 -> 128 (XLA: 50-54 ms), 1.05-1.13x at
# 128-512 channels, 1.5x for a 1x1 shortcut (docs/performance.md, "Strided input gradients").
NATIVE_STRIDED_INPUT_GRAD = True
# The dense kernels take kernels of at most this many taps (kMaxTaps in dense_conv.cc).
NATIVE_MAX_TAPS = 64
# A native 3x3 stride-1 convolution's forward pass (and so its input gradient) and weight
# gradient run as Winograd's F(2x2, 3x3) (dense_conv.cc: 16 instead of 36 multiplications per 2x2
# output block, input and output channel) where the call has at least WINOGRAD_MIN_TILES 2x2
# output tiles and at most WINOGRAD_MAX_CHANNEL_PRODUCT input x output channels: at batch 32 on 2
# threads the forward pass 1.3-1.7x the direct kernel and the weight gradient 1.35-1.6x, at
# 64-256 channels on 8-56 px maps; the forward pass slower with few tiles (batch 1 at 14x14x256:
# 1.2 -> 1.9 ms; 128 tiles of 256 channels 0.92x) and at 512 channels (7x7: 26.0 -> 32.4 ms),
# where transforming the kernel and streaming it cost more than the GEMMs save (one-off
# harness, docs/performance.md, "Winograd"). Within ~2e-6 of the direct sums, relative to the
# largest value. 128 tiles since the evening of 2026-12-05 (256 before): at batch 1 against the
# direct kernels of that day 0.69-0.79x at 49 tiles, 1.00x at 98, 1.04-1.51x at 121-196 (28x28
# 128 -> 128: 1.26-1.44x); batch-1 latency ResNet-18 1.04-1.05x, DenseNet-121 1.01-1.02x,
# ResNet-50 1.00x, ResNet-18's train step at 48 px 1.03-1.10x (its 6x6 maps: 144 tiles a device).
NATIVE_WINOGRAD = True
WINOGRAD_MIN_TILES = 128
WINOGRAD_MAX_CHANNEL_PRODUCT = 256 * 256
# ... and the weight gradient as Winograd's only from WINOGRAD_WGRAD_MIN_CHANNELS input channels:
# its tasks split the input channels between the threads and transform their share of the input
# tiles a vector of 16 channels at a time, each task the whole output gradient's tiles too, so
# with 16 or 24 channels (8 or 12 a task on 2 threads) the transforms cost more than the GEMMs
# save. Batch 32 on 2 threads, direct / Winograd (one-off harness over dense_wgrad_kernel, medians
# of 21 alternating calls, 2026-12-05): 16 -> 32 at 16x16 0.39 / 0.61-0.63 ms (0.63x), at 8x8
# and 64x64 0.66x and 0.64x, 16 -> 16 at 32x32 0.65x, 16 -> 64 0.66x, 24 -> 24 and 24 -> 48
# 0.53x and 0.60x; from 32 channels Winograd's wins: 32 -> 16, 32, 64, 128 at 8-32 px 1.07-1.40x
# (the one exception seen: 40 -> 40, 0.86x; 48 -> 48 1.07x). The forward pass (and so the input
# gradient) keeps Winograd's at 16 channels (16 -> 16, 64, 128: 1.15-1.37x; 16 -> 32 0.84-0.99x).
WINOGRAD_WGRAD_MIN_CHANNELS = 32
# A 1x1 stride-1 convolution in the 'taps' form (the 1x1 default on CPU) takes its weight gradient
# from the native dense kernel (``x^T g`` straight from the NHWC maps, where XLA's einsum first
# copies one operand channels-major) if it has at least as many input as output channels or the
# call covers at least POINTWISE_MIN_PIXELS output pixels (all devices together): at batch 32 on
# 2 threads 1.1-3.1x the einsum on ResNet-50's and EfficientNet-B0's 1x1 shapes in a one-off
# script (0.99-1.98x on four of them in tools/bench_ops.py --op=kernels), slower where the
# channels expand on small maps (14x14 80 -> 480: 0.73x; 7x7 512 -> 2048: 0.78x). Its forward pass
# and input gradient stay XLA's GEMMs (the native kernels ran those 0.4-1.6x as fast).
NATIVE_POINTWISE_WGRAD = True
POINTWISE_MIN_PIXELS = 16384
# ... and one with at most POINTWISE_BWD_MAX_IN_CHANNELS input channels on maps of at least
# POINTWISE_BWD_MIN_MAP_PIXELS output pixels takes both gradients from one
# native kernel (``pointwise.cc``) that reads the output gradient once, each chunk of it used by
# both while in L1: where few channels expand to many the output gradient is the largest operand,
# and the weight-gradient kernel and XLA's GEMM each read it from memory. Against those two at
# batch 32 on the 2-core AMD EPYC (AVX2; a one-off script alternating the two jitted forms, medians
# of 9-15, 2026-12-06): 16 -> 96 at 112x112 31.7 -> 21.2 ms (1.50x), 24 -> 144 at 56x56 1.37x,
# 32 -> 192 and 40 -> 240 at 28x28 1.20x and 1.26x, 32 -> 16 at 112x112 1.87x, 48 -> 288 at
# 14x14 1.20x, 16 -> 96 at 7x7 1.31x, 40 -> 240 at 8x8 1.03x (batch 16: 1.29x), at 6x6 1.01x;
# on 4x4 maps 0.63-0.72x (48 -> 288, batch 32 and 64), on 1x1 maps (a squeeze-excite's 10 -> 240)
# 0.84x: each image's weight-gradient totals cost as much as its few pixels' work. Up to 48 input
# channels the kernel's input-gradient tile holds all of a pixel's channels (with 64 and more
# 0.53-0.78x, at 14x14 to 56x56). `tools/bench_ops.py --op=kernels` times four of these layers
# (16 -> 96, 32 -> 16, 24 -> 144, 40 -> 240: 1.20-1.72x there; docs/performance.md, "Both
# gradients of a 1x1 convolution in one pass").
NATIVE_POINTWISE_BWD = True
POINTWISE_BWD_MAX_IN_CHANNELS = 48
POINTWISE_BWD_MIN_MAP_PIXELS = 64
PADDINGS = ("same_tf", "symmetric", "valid")

_DIMS = ("NHWC", "HWIO", "NHWC")


class ImplSwitch:
    """A process-wide choice between implementations of one op, for modules built with
    ``impl='auto'``: an override (``override_impl``) or else a backend-based default. Read at trace
    time, so it applies to functions traced while it is in effect."""

    def __init__(self, what: str, impls: tuple[str, ...]):
        self.what, self.impls, self.override = what, impls, None

    def validate(self, impl: str) -> None:
        if impl not in self.impls:
            raise ValueError(f"{self.what} impl must be one of {self.impls}, got {impl!r}")

    def resolve(self, impl: str, default) -> str:
        """``impl`` unless 'auto'; then the override, else ``default()``."""
        self.validate(impl)
        if impl != "auto":
            return impl
        return self.override if self.override is not None else default()


class override_impl(contextlib.ContextDecorator):
    """Sets ``switch``'s override at once (globally) and, used as a context manager or decorator,
    restores the previous one on exit. ``None``/'auto' restores the backend-based choice."""

    def __init__(self, switch: ImplSwitch, impl: str | None):
        if impl is not None:
            switch.validate(impl)
        self._switch, self._previous = switch, switch.override
        switch.override = None if impl in (None, "auto") else impl

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._switch.override = self._previous
        return False


CONV_SWITCH = ImplSwitch("conv", CONV_IMPLS)


def set_conv_impl(impl: str | None) -> override_impl:
    """Overrides the convolution implementation for modules built with ``impl='auto'``:
    ``set_conv_impl('xla')`` globally, ``with set_conv_impl('taps'): ...`` for a block."""
    return override_impl(CONV_SWITCH, impl)


def resolve_conv_impl(
    impl: str = "auto",
    kernel_size: tuple[int, int] = (1, 1),
    output_hw: tuple[int, int] = (8, 8),
    in_channels: int | None = None,
    out_channels: int | None = None,
    stride: int = 1,
    native_ok: bool = True,
    batch: int | None = None,
) -> str:
    """Returns 'xla', 'taps', 'patches' or 'native' for ``impl`` given the override, the backend,
    the kernel size, the output map size, the channels, the stride and the batch (all devices
    together; module docstring).
    ``native_ok=False`` (an operand the native kernels cannot take: not float32, or an empty
    output) makes 'auto' pick the best of the others; an explicit 'native' stays 'native'."""

    def default():
        if jax.default_backend() != "cpu":
            return "xla"
        # (An empty output, from an input too small for the network, stays with XLA.)
        tiny = min(output_hw) >= 1 and output_hw[0] * output_hw[1] <= PATCHES_MAX_OUTPUT_PIXELS
        known = in_channels is not None and out_channels is not None
        strided = (
            NATIVE_STRIDE2
            and stride == 2
            and tuple(kernel_size) in ((1, 1), (3, 3))
            and known
            and not tiny
        )
        if tuple(kernel_size) == (1, 1):
            return "native" if strided and native_ok and native.available() else "taps"
        if tiny:
            return "patches"
        few = in_channels is not None and in_channels <= NATIVE_MAX_IN_CHANNELS
        few_pixels = batch is not None and batch * output_hw[0] * output_hw[1] <= NATIVE_FEW_PIXELS
        dense = tuple(kernel_size) == (3, 3) and (
            strided
            or (
                known
                and stride == 1
                and (max(in_channels, out_channels) <= NATIVE_MAX_CHANNELS or few_pixels)
            )
        )
        return "native" if (few or dense) and native_ok and native.available() else "xla"

    return CONV_SWITCH.resolve(impl, default)


# Which library runs XLA's own dense convolutions on XLA:CPU: XLA hands them to YNNPACK by
# default; "eigen" leaves them with XLA's Eigen convolution kernels while dots (the 1x1 'taps'
# convolutions, the heads) and reductions stay with YNNPACK. Per convolution direction at batch 16
# (one device, 2 threads, shared/environment.md's machine; Eigen measured with YNNPACK off
# altogether) Eigen was 1.6-2.0x faster at 56x56x64, 1.5x in the weight gradient at 28x28x128,
# even at 14x14, slower at 7x7x512; whole train steps at 224 px: docs/performance.md.
# 'auto' = 'eigen'; it changes compile options, not the program.
CPU_CONV_LIBRARIES = ("auto", "eigen", "ynnpack")
CPU_CONV_LIBRARY = ImplSwitch("XLA:CPU convolution library", CPU_CONV_LIBRARIES)
_EIGEN_CONVOLUTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def set_cpu_conv_library(library: str | None) -> override_impl:
    """Overrides the XLA:CPU convolution library ('eigen' or 'ynnpack') for programs whose jit is
    made while it is in effect (`compiler_options`); globally or as a context manager."""
    return override_impl(CPU_CONV_LIBRARY, library)


def compiler_options(platform: str | None = None) -> dict | None:
    """XLA compile options for the jitted programs that run the zoo's convolutions on
    ``platform`` (default: JAX's default backend): on CPU with the 'eigen' library, the option
    that takes dense convolutions away from YNNPACK; None elsewhere, or where this jaxlib does
    not know the option (older XLA)."""
    if (platform or jax.default_backend()) != "cpu":
        return None
    if CPU_CONV_LIBRARY.resolve("auto", lambda: "eigen") != "eigen":
        return None
    return dict(_EIGEN_CONVOLUTIONS) if _eigen_option_accepted() else None


@functools.cache
def _eigen_option_accepted() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=_EIGEN_CONVOLUTIONS).lower(jnp.zeros(1)).compile()
    except (RuntimeError, ValueError):  # jax.errors.JaxRuntimeError: INVALID_ARGUMENT
        return False
    return True


def get_padding(
    mode: str, size: int, kernel: int, stride: int, dilation: int = 1
) -> tuple[int, int]:
    """Returns (low, high) padding of one spatial dimension for a padding mode.

    'same_tf': TF 'SAME' - output size ceil(size / stride), total padding split with the extra pixel
    at the end (depends on the input size, hence "dynamic" in timm's ``Conv2dSame``).
    'symmetric': timm ``get_padding`` = ((stride - 1) + dilation * (kernel - 1)) // 2 on both sides.
    'valid': no padding.
    """
    if mode == "same_tf":
        effective = (kernel - 1) * dilation + 1
        out = -(-size // stride)
        total = max((out - 1) * stride + effective - size, 0)
        return total // 2, total - total // 2
    if mode == "symmetric":
        pad = ((stride - 1) + dilation * (kernel - 1)) // 2
        return pad, pad
    if mode == "valid":
        return 0, 0
    raise ValueError(f"padding must be one of {PADDINGS}, got {mode!r}")


def _xla_conv(x, w, stride, pads, dilation=1, groups=1):
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(stride, stride),
        padding=pads,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_DIMS,
        feature_group_count=groups,
    )


def weight_grad_taps(x, g, kernel_shape, stride, pads):
    """Gradient of ``conv(x, w)`` w.r.t. ``w`` (HWIO) as one einsum per kernel tap.

    Args:
      x: the conv input ``[B, H, W, C]``.
      g: the output cotangent ``[B, Ho, Wo, O]``.
      kernel_shape: ``(kh, kw, C, O)``.
      stride: the conv stride (same in both dimensions).
      pads: ``((top, bottom), (left, right))`` explicit padding of the forward conv.
    Returns:
      ``[kh, kw, C, O]`` in ``g``'s dtype, accumulated in float32.
    """
    kh, kw, c, _ = kernel_shape
    taps = window_taps(x, (kh, kw), g.shape[1:3], stride, pads)
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            tap = taps[i * kw + j]
            if g.shape[-1] < c and tap.dtype == g.dtype == jnp.float32:
                # XLA:CPU lays the GEMM's first operand out transposed (a full copy of it), so
                # the operand with fewer channels goes first: in an inverted-residual block's
                # projection (e.g. 144 -> 24 channels) this copies the 24-channel cotangent
                # instead of the 144-channel activation. (float32 only: XLA:CPU has no
                # bf16 x bf16 -> f32 kernel for this operand order.)
                dw = jnp.einsum("bhwo,bhwc->oc", g, tap, preferred_element_type=jnp.float32).T
            else:
                dw = jnp.einsum("bhwc,bhwo->co", tap, g, preferred_element_type=jnp.float32)
            cols.append(dw)
        rows.append(jnp.stack(cols))
    return jnp.stack(rows).astype(g.dtype)


def window_taps(x, kernel_hw, output_hw, stride, pads, only=None, fill=0.0) -> list:
    """The strided slice of the input padded with ``fill`` that each kernel (or pooling window)
    tap ``(i, j)`` meets, row-major: ``kh * kw`` arrays ``[B, Ho, Wo, C]`` (or those of the taps
    ``only``, a list of ``(i, j)``)."""
    (kh, kw), (ho, wo) = kernel_hw, output_hw
    b, _, _, c = x.shape
    xp = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)), constant_values=fill)
    return [
        jax.lax.slice(
            xp,
            (0, i, j, 0),
            (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for i, j in (only if only is not None else [(i, j) for i in range(kh) for j in range(kw)])
    ]


def live_taps(input_hw, kernel_hw, stride, pads) -> list[tuple[int, int]]:
    """The kernel taps ``(i, j)``, row-major, that multiply at least one input pixel; the others
    see only padding (zeros) at every output position, so they add exactly nothing to the output
    and get an exactly zero weight gradient. On a 1x1 map with 'SAME' padding only the centre tap
    of a 3x3 kernel is live."""
    (kh, kw), (ho, wo) = kernel_hw, output_hw(input_hw, kernel_hw, stride, pads)

    def live(k, n, pad, size):  # does tap k read a real row (column) for some output n?
        return any(pad[0] <= k + stride * r < pad[0] + size for r in range(n))

    rows = [i for i in range(kh) if live(i, ho, pads[0], input_hw[0])]
    cols = [j for j in range(kw) if live(j, wo, pads[1], input_hw[1])]
    return [(i, j) for i in rows for j in cols]


def _conv_patches(x, w, stride, pads):
    """The convolution as one GEMM over gathered patches (``[B, Ho, Wo, taps * C] @ [taps * C,
    O]``), differentiated by autodiff: slices, a concatenation and einsums, all at GEMM speed."""
    kh, kw, c, o = w.shape
    ho, wo = output_hw(x.shape[1:3], (kh, kw), stride, pads)
    # Taps that see only padding are left out (on a 1x1 map 8 of a 3x3 kernel's 9): a GEMM over
    # C instead of 9 C, and their weight gradient is the exact zero autodiff gives the gather.
    live = live_taps(x.shape[1:3], (kh, kw), stride, pads)
    if len(live) == kh * kw:
        kernel = w.reshape(kh * kw * c, o)
    else:
        kernel = jnp.concatenate([w[i, j] for i, j in live], axis=0)
    cols = jnp.concatenate(window_taps(x, (kh, kw), (ho, wo), stride, pads, live), axis=-1)
    out = jnp.einsum("bhwk,ko->bhwo", cols, kernel, preferred_element_type=jnp.float32)
    return out.astype(jnp.result_type(x.dtype, w.dtype))


def output_hw(input_hw, kernel_hw, stride, pads) -> tuple[int, int]:
    """The output map size of a convolution with explicit ``pads``."""
    return tuple((n + p[0] + p[1] - k) // stride + 1 for n, k, p in zip(input_hw, kernel_hw, pads))


def _xla_input_grad(x, w, g, stride, pads):
    """The input gradient as XLA's own transposed convolution. When ``x`` is the network's input
    nothing uses it, and XLA removes it as dead code."""
    _, vjp_x = jax.vjp(lambda x: _xla_conv(x, w, stride, pads), x)
    return vjp_x(g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_taps(x, w, stride, pads, native_bwd):
    return _xla_conv(x, w, stride, pads)


def _conv_taps_fwd(x, w, stride, pads, native_bwd):
    return _xla_conv(x, w, stride, pads), (x, w)


def _conv_taps_bwd(stride, pads, native_bwd, res, g):
    """``native_bwd``: None (XLA's gradients), 'wgrad' (the native weight gradient, see
    `pointwise_wgrad_fits`) or 'both' (both gradients from the native 1x1 kernel, see
    `pointwise_bwd_fits`)."""
    x, w = res
    if native_bwd == "both":
        dx, dw_per_image = _pointwise_bwd_parallel(x, w[0, 0], g, stride, pads)
        return dx, sum_over_images(dw_per_image).reshape(w.shape)
    if w.shape[:2] == (1, 1) and stride == 1 and pads == ((0, 0), (0, 0)):
        # A 1x1 conv's input gradient is one GEMM; XLA:CPU's transposed 1x1 convolution was 11x
        # slower than this einsum at EfficientNet-B0's 32x112x112 (96 -> 16 channels): 91 vs 8 ms.
        dx = jnp.einsum("bhwo,io->bhwi", g, w[0, 0]).astype(x.dtype)
    else:
        dx = _xla_input_grad(x, w, g, stride, pads)  # at parity with PyTorch on CPU for 3x3
    if native_bwd == "wgrad":
        return dx, _dense_wgrad_parallel(x, w, g, stride, pads)
    dw = weight_grad_taps(x, g, w.shape, stride, pads).astype(w.dtype)
    return dx, dw


_conv_taps.defvjp(_conv_taps_fwd, _conv_taps_bwd)


# Per-image partial sums (the native kernels' weight gradients) are added up as a product with a
# vector of ones (`sum_over_images`) instead of a reduction (tools/bench_ab.py
# --variant=image_sums_reduce turns it off).
SUM_IMAGES_AS_DOT = True


def sum_over_images(per_image: jax.Array) -> jax.Array:
    """``jnp.sum(per_image, 0)``: the per-image partial sums a native kernel returns (a weight
    gradient for each image), added up, as a product with a vector of ones (which XLA:CPU emits
    as a loop fusion): its reduction of the leading axis takes 8x as long at 16385 elements an
    image as at 16384 and runs 13-28x slower than the product past that (2-64 images, 2
    threads: [32, 16384] 0.11 ms, [32, 16385] 0.89 ms against 0.04 ms as the product;
    EfficientNet-B0's 5x5 1152-channel depthwise kernel, [32, 28800], 1.71 ms against 0.06). Over a batch sharded across devices the product partitions as the sum does
    (each device's images, then added)."""
    if not SUM_IMAGES_AS_DOT:
        return jnp.sum(per_image, 0)
    ones = jnp.ones(per_image.shape[:1], per_image.dtype)
    return jnp.tensordot(ones, per_image, axes=1)


# Under jit with the batch sharded over several devices, XLA's partitioner would gather a custom
# call's operands onto every device. Declared batch-parallel, each device runs the kernels on its
# own images: image tensors are split along the batch (only), the kernel is replicated, and
# per-image kernel gradients stay batch-sharded until the caller sums them.
def batch_axis(sharding):
    """The mesh axis a batch-sharded operand's first dimension is split over, or None."""
    spec = getattr(sharding, "spec", None)
    return spec[0] if spec else None


def batch_parallel(
    fn, n_image_args: int, n_results: int, rule: str, summed: bool = False, kernel: bool = True
):
    """``fn(image, kernel, *more_images, stride, pads)`` (a native kernel's FFI call) as a
    ``custom_partitioning`` that splits every image operand and result along the batch only and
    replicates the kernel; ``rule`` is its Shardy sharding rule. ``summed``: the (one) result is
    a sum over the images instead, replicated: each device's partial sum, summed over devices.
    ``kernel=False``: ``fn(*images, stride, pads)``, no kernel operand (pooling)."""
    n_args = n_image_args + kernel
    wrapped = custom_partitioning(fn, static_argnums=(n_args, n_args + 1))

    def shardings(mesh, arg_shapes):
        """(result shardings, argument shardings): images by batch only, the kernel replicated."""
        batch = NamedSharding(mesh, P(batch_axis(arg_shapes[0].sharding)))
        kernels = (NamedSharding(mesh, P()),) if kernel else ()
        args = (batch, *kernels) + (batch,) * (n_image_args - 1)
        if summed:
            return NamedSharding(mesh, P()), args
        return (batch if n_results == 1 else (batch,) * n_results), args

    def infer(stride, pads, mesh, arg_shapes, result_shape):
        return shardings(mesh, arg_shapes)[0]

    def partition(stride, pads, mesh, arg_shapes, result_shape):
        out, args = shardings(mesh, arg_shapes)
        axis = batch_axis(arg_shapes[0].sharding)
        if summed and axis is not None:
            return mesh, lambda *a: jax.lax.psum(fn(*a, stride, pads), axis), out, args
        return mesh, lambda *a: fn(*a, stride, pads), out, args

    wrapped.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule)
    return wrapped


def native_call(what: str, target: str, results, *args, stride: int, pads, **more):
    """The native kernel ``target`` (an XLA FFI custom call; ``what`` names the op in the error
    when the kernels cannot be built) on ``args`` with the ``stride`` and explicit ``pads``
    attributes every kernel takes, and ``more`` attributes; ``results`` are its result
    shapes (a float attribute is passed as float32)."""
    if not native.available():  # builds and registers the FFI targets on first use
        raise RuntimeError(
            f"{what} impl 'native' requested but unavailable: {native.unavailable_reason()}"
        )
    call = jax.ffi.ffi_call(target, results, vmap_method="sequential")
    attrs = dict(
        stride=np.int64(stride), pad_top=np.int64(pads[0][0]), pad_left=np.int64(pads[1][0])
    )
    more = {k: np.float32(v) if isinstance(v, float) else np.int64(v) for k, v in more.items()}
    return call(*args, **attrs, **more)


def _stem_fwd_call(x, w, stride, pads):
    ho, wo = output_hw(x.shape[1:3], w.shape[:2], stride, pads)
    out = jax.ShapeDtypeStruct((x.shape[0], ho, wo, w.shape[3]), x.dtype)
    return native_call("conv", "jaxcls_stem_conv_fwd", out, x, w, stride=stride, pads=pads)


def _stem_wgrad_call(x, w, g, stride, pads):
    """The weight gradient per image, ``[B, kh, kw, C, O]``."""
    out = jax.ShapeDtypeStruct((x.shape[0], *w.shape), x.dtype)
    return native_call("conv", "jaxcls_stem_conv_wgrad", out, x, w, g, stride=stride, pads=pads)


_stem_fwd_parallel = batch_parallel(_stem_fwd_call, 1, 1, "b h w c, i j c o -> b p q o")
_stem_wgrad_parallel = batch_parallel(
    _stem_wgrad_call, 2, 1, "b h w c, i j c o, b p q o -> b i j c o"
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_native(x, w, stride, pads):
    return _stem_fwd_parallel(x, w, stride, pads)


def _conv_native_fwd(x, w, stride, pads):
    return _conv_native(x, w, stride, pads), (x, w)


def _conv_native_bwd(stride, pads, res, g):
    x, w = res
    # The network input, usually, for a layer with so few input channels: no input gradient then.
    dx = _xla_input_grad(x, w, g, stride, pads)
    return dx, sum_over_images(_stem_wgrad_parallel(x, w, g, stride, pads))


_conv_native.defvjp(_conv_native_fwd, _conv_native_bwd)


def winograd_fits(
    batch: int, out_hw, kernel_shape, stride: int, weight_gradient: bool = False
) -> bool:
    """Whether the native forward kernel (``weight_gradient``: the weight-gradient kernel) runs a
    call (``batch`` images, this device's share) of this output size and ``[kh, kw, C, O]``
    kernel as Winograd's F(2x2, 3x3): see ``NATIVE_WINOGRAD`` and
    ``WINOGRAD_WGRAD_MIN_CHANNELS``."""
    kh, kw, c, o = kernel_shape
    tiles = batch * -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
    return (
        NATIVE_WINOGRAD
        and (kh, kw, stride) == (3, 3, 1)
        and tiles >= WINOGRAD_MIN_TILES
        and c * o <= WINOGRAD_MAX_CHANNEL_PRODUCT
        and (not weight_gradient or c >= WINOGRAD_WGRAD_MIN_CHANNELS)
    )


def _native_pointwise(kernel_shape, stride: int, pads) -> bool:
    """Whether a convolution is a 1x1 stride-1 unpadded one that the native CPU kernels could
    take (the CPU backend, the kernels built): what both rules below start from."""
    return (
        jax.default_backend() == "cpu"
        and tuple(kernel_shape[:2]) == (1, 1)
        and stride == 1
        and pads == ((0, 0), (0, 0))
        and native.available()
    )


def pointwise_wgrad_fits(batch: int, out_hw, kernel_shape, stride: int, pads) -> bool:
    """Whether the 'taps' form of a convolution (``batch`` images, all devices together) takes its
    weight gradient from the native kernel (CPU kernels: on the CPU backend only; an explicit
    'taps' elsewhere keeps the einsum): see ``NATIVE_POINTWISE_WGRAD``."""
    return (
        NATIVE_POINTWISE_WGRAD
        and _native_pointwise(kernel_shape, stride, pads)
        and (
            kernel_shape[2] >= kernel_shape[3]
            or batch * out_hw[0] * out_hw[1] >= POINTWISE_MIN_PIXELS
        )
    )


def pointwise_bwd_fits(out_hw, kernel_shape, stride: int, pads) -> bool:
    """Whether the 'taps' form of a convolution takes both gradients from the native 1x1 kernel
    (CPU only): see ``NATIVE_POINTWISE_BWD``."""
    return (
        NATIVE_POINTWISE_BWD
        and _native_pointwise(kernel_shape, stride, pads)
        and kernel_shape[2] <= POINTWISE_BWD_MAX_IN_CHANNELS
        and out_hw[0] * out_hw[1] >= POINTWISE_BWD_MIN_MAP_PIXELS
    )


def _pointwise_bwd_call(x, w, g, stride, pads):
    """``(dx, weight gradient per image [B, C, O])`` of a 1x1 stride-1 convolution of ``x`` with
    ``w`` [C, O], its output gradient ``g``."""
    out = (
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        jax.ShapeDtypeStruct((x.shape[0], *w.shape), x.dtype),
    )
    return native_call("conv", "jaxcls_pointwise_bwd", out, x, w, g, stride=stride, pads=pads)


_pointwise_bwd_parallel = batch_parallel(
    _pointwise_bwd_call, 2, 2, "b h w c, c o, b h w o -> b h w c, b c o"
)


def _dense_fwd_call(x, w, stride, pads):
    # custom_partitioning (below) wants exactly the arguments it is called with: no defaults.
    return dense_fwd_kernel(x, w, stride, pads)


def dense_fwd_kernel(x, w, stride, pads, winograd: bool | None = None):
    """The native forward kernel, as F(2x2, 3x3) (3x3 stride 1 only) or directly; by default as
    Winograd's where :func:`winograd_fits`. Directly over at most ``NATIVE_FEW_PIXELS`` output
    pixels (this call's images) it runs the few-pixels form (the same sums in the same order)."""
    ho, wo = output_hw(x.shape[1:3], w.shape[:2], stride, pads)
    if winograd is None:
        winograd = winograd_fits(x.shape[0], (ho, wo), w.shape, stride)
    few = not winograd and x.shape[0] * ho * wo <= NATIVE_FEW_PIXELS
    out = jax.ShapeDtypeStruct((x.shape[0], ho, wo, w.shape[3]), x.dtype)
    return native_call(
        "conv", "jaxcls_conv_fwd", out, x, w, stride=stride, pads=pads, winograd=winograd, few=few
    )


def _dense_wgrad_call(x, w, g, stride, pads):
    return dense_wgrad_kernel(x, w, g, stride, pads)


def dense_wgrad_kernel(x, w, g, stride, pads, winograd: bool | None = None):
    """The weight gradient summed over this call's images, ``[kh, kw, C, O]`` (``w`` gives only
    its shape), as F(2x2, 3x3) (3x3 stride 1 only) or directly; by default as Winograd's where
    :func:`winograd_fits` (for a weight gradient)."""
    if winograd is None:
        winograd = winograd_fits(x.shape[0], g.shape[1:3], w.shape, stride, weight_gradient=True)
    out = jax.ShapeDtypeStruct(w.shape, x.dtype)
    return native_call(
        "conv", "jaxcls_conv_wgrad", out, x, g, stride=stride, pads=pads, winograd=winograd
    )


_dense_fwd_parallel = batch_parallel(_dense_fwd_call, 1, 1, "b h w c, i j c o -> b p q o")
_dense_wgrad_parallel = batch_parallel(
    _dense_wgrad_call, 2, 1, "b h w c, i j c o, b p q o -> i j c o", summed=True
)


def _dense_input_grad(x, w, g, pads):
    """The input gradient of a stride-1 convolution as the native forward kernel: the output
    gradient convolved with the kernel flipped in space, input and output channels swapped, and
    padded by ``k - 1 - pad`` on each side (which gives back ``x``'s shape)."""
    kh, kw = w.shape[:2]
    flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    back = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip((kh, kw), pads))
    return _dense_fwd_parallel(g, flipped, 1, back)


def _phase_taps(phase: int, kernel: int, stride: int, pad: int, rows: int, g_rows: int):
    """Along one axis of a convolution (``kernel`` taps, ``stride``, ``pad`` before), the input
    positions ``stride * a + phase`` (``a < rows``) receive gradient from the taps ``t`` with
    ``(phase + pad - t) % stride == 0``, reading the output gradient at ``a + (phase + pad - t) //
    stride``: a stride-1 convolution of the output gradient with those taps in reverse order.
    Returns (the taps in kernel order, reversed; the padding before and after that stride-1
    convolution needs, either possibly negative: a crop), or None when no tap reaches the phase
    (its gradient is zero)."""
    first = (phase + pad) % stride
    taps = list(range(first, kernel, stride))
    if not taps:
        return None
    lo = len(taps) - 1 - (phase + pad - first) // stride
    return taps[::-1], lo, rows - g_rows - lo + len(taps) - 1


def _strided_input_grad(x, w, g, stride, pads):
    """The input gradient of a strided convolution as the native forward kernel, once per output
    phase: the input pixels ``(s*a + p, s*b + q)`` get their gradient from the kernel taps of
    matching phase only (for a 3x3 kernel at stride 2: 2x2, 2x1, 1x2 and 1x1 of them), a stride-1
    convolution of the output gradient with those taps flipped and input/output channels swapped;
    the phases' results interleave into ``x``'s shape. No multiplication by the zeros a transposed
    convolution inserts between the output gradient's pixels."""
    b, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    rows, cols = -(-h // stride), -(-wd // stride)  # phase 0 has the most positions
    phase_rows = []
    for p in range(stride):
        phase_cols = []
        for q in range(stride):
            plan_h = _phase_taps(p, kh, stride, pads[0][0], rows, g.shape[1])
            plan_w = _phase_taps(q, kw, stride, pads[1][0], cols, g.shape[2])
            if plan_h is None or plan_w is None:
                phase_cols.append(jnp.zeros((b, rows, cols, c), g.dtype))
                continue
            (taps_h, *pad_h), (taps_w, *pad_w) = plan_h, plan_w
            kernel = w[np.array(taps_h)][:, np.array(taps_w)].transpose(0, 1, 3, 2)
            crop = tuple(
                slice(max(0, -lo), n - max(0, -hi))
                for (lo, hi), n in zip((pad_h, pad_w), g.shape[1:3])
            )
            pad = tuple((max(0, lo), max(0, hi)) for lo, hi in (pad_h, pad_w))
            phase_cols.append(_dense_fwd_parallel(g[:, crop[0], crop[1]], kernel, 1, pad))
        phase_rows.append(jnp.stack(phase_cols, 3))  # [B, rows, cols, q, C]
    dx = jnp.stack(phase_rows, 2).reshape(b, rows * stride, cols * stride, c)
    return dx[:, :h, :wd]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_dense_native(x, w, stride, pads):
    return _dense_fwd_parallel(x, w, stride, pads)


def _conv_dense_native_fwd(x, w, stride, pads):
    return _conv_dense_native(x, w, stride, pads), (x, w)


def _native_input_grad_fits(kernel_hw, stride, pads) -> bool:
    """Whether the native input gradient takes this convolution: padding before smaller than the
    kernel on both axes (else XLA's), and stride 1 or NATIVE_STRIDED_INPUT_GRAD."""
    small = all(0 <= p[0] < k for p, k in zip(pads, kernel_hw))
    return small and (stride == 1 or NATIVE_STRIDED_INPUT_GRAD)


def _conv_dense_native_bwd(stride, pads, res, g):
    x, w = res
    if not _native_input_grad_fits(w.shape[:2], stride, pads):
        dx = _xla_input_grad(x, w, g, stride, pads)
    elif stride == 1:
        dx = _dense_input_grad(x, w, g, pads)
    else:
        dx = _strided_input_grad(x, w, g, stride, pads)
    return dx, _dense_wgrad_parallel(x, w, g, stride, pads)


_conv_dense_native.defvjp(_conv_dense_native_fwd, _conv_dense_native_bwd)


def _taps_bwd(x, w, stride: int, pads, native_fits: bool):
    """The 'taps' form's ``native_bwd`` for ``x`` and ``w`` (see `_conv_taps_bwd`)."""
    out_hw = output_hw(x.shape[1:3], w.shape[:2], stride, pads)
    if native_fits and pointwise_bwd_fits(out_hw, w.shape, stride, pads):
        return "both"
    if native_fits and pointwise_wgrad_fits(x.shape[0], out_hw, w.shape, stride, pads):
        return "wgrad"
    return None


def _chosen(x, w, stride: int, pads, impl: str) -> tuple[str, bool]:
    """``(the impl conv2d runs, whether the native kernels fit)`` for an ungrouped, undilated
    convolution of ``x`` with ``w`` (anything with ``shape`` and ``dtype``)."""
    out_hw = output_hw(x.shape[1:3], w.shape[:2], stride, pads)
    c, o = w.shape[2:]
    native_fits = min(out_hw) >= 1 and x.dtype == w.dtype == jnp.float32
    chosen = resolve_conv_impl(
        impl, w.shape[:2], out_hw, c, o, stride, native_fits, batch=x.shape[0]
    )
    return chosen, native_fits


def pointwise_bwd_native(x, w, stride: int, pads, impl: str = "auto") -> bool:
    """Whether :func:`conv2d` of ``x`` with ``w`` (``shape``/``dtype`` suffice) takes both
    gradients from the native 1x1 kernel, the one :func:`pointwise_bn_grads` extends."""
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    chosen, native_fits = _chosen(x, w, int(stride), pads, impl)
    return chosen == "taps" and _taps_bwd(x, w, int(stride), pads, native_fits) == "both"


def pointwise(x, w):
    """A 1x1 stride-1 unpadded convolution (``w`` [1, 1, C, O]) as :func:`conv2d`'s 'taps' form
    computes it (without its gradients)."""
    return _xla_conv(x, w, 1, ((0, 0), (0, 0)))


@functools.cache
def _pointwise_bn_parallel(hi: float):
    def call(x, wc, gz, y, stride, pads):
        out = (
            jax.ShapeDtypeStruct(x.shape, x.dtype),
            jax.ShapeDtypeStruct((x.shape[0], x.shape[-1], wc.shape[1]), x.dtype),
        )
        target = "jaxcls_pointwise_bn_bwd"
        return native_call("conv", target, out, x, wc, gz, y, stride=stride, pads=pads, hi=hi)

    rule = "b h w c, k o, b h w o, b h w o -> b h w c, b c o"
    return batch_parallel(call, 3, 2, rule)


def pointwise_bn_grads(x, w, gz, y, coefficients, hi: float):
    """``(dx, dw)``, both gradients of ``y = pointwise(x, w)`` followed by a BatchNorm and a ReLU
    (``hi`` inf) or ReLU6 (6), from the activation's output gradient ``gz``, with BatchNorm's
    input gradient ``mul * where(0 < y * mul + shift < hi, gz, 0) + alpha + beta * (y - mean)``
    (``coefficients`` [5, O]: those per-channel rows in that order) built inside the native
    kernel (``pointwise.cc``), never written."""
    wc = jnp.concatenate([w[0, 0], coefficients.astype(w.dtype)])
    dx, dw_per_image = _pointwise_bn_parallel(float(hi))(x, wc, gz, y, 1, ((0, 0), (0, 0)))
    return dx, sum_over_images(dw_per_image).reshape(w.shape)


def conv2d(x, w, *, stride=1, pads=((0, 0), (0, 0)), dilation=1, groups=1, impl="auto"):
    """NHWC x HWIO convolution with explicit ``pads``; ``impl`` as in the module docstring."""
    pads = tuple(tuple(int(v) for v in p) for p in pads)
    if groups == 1 and dilation == 1:
        stride = int(stride)
        c = w.shape[2]
        chosen, native_fits = _chosen(x, w, stride, pads, impl)
        if chosen == "taps":
            return _conv_taps(x, w, stride, pads, _taps_bwd(x, w, stride, pads, native_fits))
        if chosen == "patches":
            return _conv_patches(x, w, stride, pads)
        if chosen == "native" and native_fits and c <= NATIVE_MAX_IN_CHANNELS:
            return _conv_native(x, w, stride, pads)
        if chosen == "native" and native_fits and w.shape[0] * w.shape[1] <= NATIVE_MAX_TAPS:
            return _conv_dense_native(x, w, stride, pads)
    return _xla_conv(x, w, stride, pads, dilation, groups)
