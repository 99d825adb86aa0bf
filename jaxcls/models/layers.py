"""Shared building blocks for the model zoo (Flax NNX, NHWC, HWIO kernels).

Everything here is written so that weights ported from PyTorch (timm, torchvision) or TF/Keras map
onto it with layout rules only:

* Convolution kernels are HWIO ``(kh, kw, in // groups, out)``; depthwise kernels are
  ``(kh, kw, 1, C)`` exactly like a Flax grouped convolution with ``feature_group_count=C``.
* Padding is explicit: ``'same_tf'`` reproduces TensorFlow's dynamic 'SAME' padding (asymmetric,
  the extra pixel goes bottom/right), ``'symmetric'`` reproduces PyTorch's static ``k // 2`` style
  padding (timm ``get_padding``). TF-origin weights must run with 'same_tf', PyTorch-origin weights
  with 'symmetric' - mixing them shifts every feature map by one pixel at stride 2.
* BatchNorm momentum uses the Flax convention (weight of the running average): a PyTorch momentum
  ``m`` is a Flax momentum ``1 - m`` (timm/torchvision default 0.1 -> 0.9; Keras 0.99 -> 0.99).

The convolution functions live in their own modules and are re-exported here: padding modes and
dense convolution with its switchable weight gradient in :mod:`jaxcls.models.conv`
(:func:`get_padding`, :func:`set_conv_impl`), depthwise convolution with its CPU form and custom
backward in :mod:`jaxcls.models.depthwise` (:func:`depthwise_conv`, :func:`set_depthwise_impl`).
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import batch_stats, pool
from jaxcls.models import conv as conv_lib
from jaxcls.models import depthwise as depthwise_lib
from jaxcls.models.conv import (  # noqa: F401  (re-exported: the models use layers.*)
    CONV_IMPLS,
    PADDINGS,
    get_padding,
    resolve_conv_impl,
    set_conv_impl,
)
from jaxcls.models.depthwise import (  # noqa: F401
    DEPTHWISE_IMPLS,
    depthwise_conv,
    resolve_depthwise_impl,
    set_depthwise_impl,
)
from jaxcls.models.pool import MAX_POOL_IMPLS, max_pool, set_max_pool_impl  # noqa: F401

# The implementations made of standard XLA ops only (no native custom calls, no CPU-specific
# formulations): what exported artefacts are traced with, and what FLOPs are counted on (XLA's
# cost analysis counts a custom call as no FLOPs at all).
PORTABLE = {"conv": "xla", "depthwise": "grouped", "max_pool": "xla"}
# A ReLU unit followed by a max pool applies its ReLU after the pool instead of before it
# (`norm_act_max_pooled`: ResNet's and DenseNet's stems always; the scratch CNNs', VGG's and
# Inception's in training; the same values and gradients; tools/bench_ab.py
# --variant=act_before_pool measures the difference).
ACT_AFTER_POOL = True


def act_after_max_pool(act: str) -> bool:
    """Whether a unit with activation ``act`` followed by a max pool runs the activation after the
    pool instead: a ReLU, which is non-decreasing, so ``relu(max_pool(y)) == max_pool(relu(y))``
    with the same gradient terms (a window whose maximum is positive sends it to its first
    maximal tap in both orders; one whose maximum is not sends none), while ``ACT_AFTER_POOL``
    is on."""
    return act == "relu" and ACT_AFTER_POOL


def portable_kernels() -> contextlib.ExitStack:
    """Context: the `PORTABLE` convolution, depthwise and max-pool implementations, and
    ``jax.nn.silu`` itself (no custom gradient), while tracing."""
    stack = contextlib.ExitStack()
    stack.enter_context(conv_lib.set_conv_impl(PORTABLE["conv"]))
    stack.enter_context(depthwise_lib.set_depthwise_impl(PORTABLE["depthwise"]))
    stack.enter_context(pool.set_max_pool_impl(PORTABLE["max_pool"]))
    stack.enter_context(autodiff_silu())
    return stack


@contextlib.contextmanager
def autodiff_silu():
    """Context: `silu` traced as ``jax.nn.silu``, autodiff's gradient (``SILU_RECOMPUTE`` off;
    exports, and ``tools/bench_ab.py --variant=silu_autodiff``)."""
    global SILU_RECOMPUTE
    old, SILU_RECOMPUTE = SILU_RECOMPUTE, False
    try:
        yield
    finally:
        SILU_RECOMPUTE = old


_ONES = nnx.initializers.ones_init()

# He (Kaiming) normal, fan-out, as torchvision/timm initialise convolutions.
conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class ParamKeys:
    """Stands in for ``nnx.Rngs`` while a model is built: cheap, deterministic parameter keys.

    ``params()`` returns ``fold_in(base, i)`` with a Python counter ``i`` and one ``base`` key drawn
    from the real Rngs' 'params' stream. nnx's own streams store their counter in a Variable, and
    each draw inside a trace (jit, eval_shape) scans the whole jaxpr built so far, which made
    building EfficientNet-B7 abstractly take ~10 s (quadratic in the number of parameters). Other
    streams (e.g. 'dropout') are forwarded to the real Rngs (see :func:`unwrap_rngs`).
    """

    def __init__(self, rngs: nnx.Rngs):
        self.rngs = rngs
        self._base = rngs.params()
        self._count = 0

    def params(self) -> jax.Array:
        key = jax.random.fold_in(self._base, self._count)
        self._count += 1
        return key

    def __getitem__(self, name: str):
        return self.rngs[name]


def unwrap_rngs(rngs):
    """The real ``nnx.Rngs`` behind a :class:`ParamKeys` (or ``rngs`` itself)."""
    return rngs.rngs if isinstance(rngs, ParamKeys) else rngs


class Dropout(nnx.Module):
    """Dropout drawing its masks from an own ``nnx.RngStream`` forked from the 'dropout' stream.

    Same semantics as ``nnx.Dropout`` (inverted dropout; ``broadcast_dims`` share the mask) and
    reseeded by ``nnx.reseed(model, dropout=key)``. It draws ``fold_in(key, count)`` and bumps the
    count with a whole-value ``set_value``: ``RngStream.__call__`` updates the count through an
    indexed set, which while tracing builds an error-message string by scanning the whole jaxpr
    so far, making the trace of a deep network quadratic (EfficientNet-B7: ~25 s per trace).
    """

    def __init__(self, rate: float, *, broadcast_dims: tuple[int, ...] = (), rngs):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.broadcast_dims = tuple(broadcast_dims)
        self.rngs = unwrap_rngs(rngs)["dropout"].fork() if rate > 0 else None

    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        stream = self.rngs
        count = stream.count.get_value()
        key = jax.random.fold_in(stream.key.get_value(), count)
        stream.count.set_value(count + 1)
        shape = tuple(1 if i in self.broadcast_dims else d for i, d in enumerate(x.shape))
        keep = jax.random.bernoulli(key, 1.0 - self.rate, shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype)).astype(x.dtype)


def dropout(rate: float, *, rngs, **kwargs) -> Dropout:
    """A :class:`Dropout` on the 'dropout' stream (reseeded by ``nnx.reseed``)."""
    return Dropout(rate, rngs=rngs, **kwargs)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Conv2d(nnx.Module):
    """2-D convolution, NHWC input, HWIO kernel, explicit padding mode (see module docstring).

    ``impl`` selects how the convolution and its gradients are computed
    (:mod:`jaxcls.models.conv`): 'auto' (on CPU: patches GEMMs for maps of at most 4 pixels,
    the tap-wise einsum form for 1x1 kernels, the native kernels for 1-4 input channels, for
    3x3 stride-1 convolutions of up to 256 channels and for 3x3 and 1x1 stride-2 ones, XLA's
    convolution otherwise; XLA's
    elsewhere), 'xla', 'taps', 'patches' or 'native'.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        stride: int = 1,
        padding: str = "symmetric",
        dilation: int = 1,
        groups: int = 1,
        use_bias: bool = False,
        impl: str = "auto",
        dtype=jnp.float32,
        kernel_init: Callable = conv_init,
        rngs: nnx.Rngs,
    ):
        conv_lib.resolve_conv_impl(impl)  # validates
        if in_features % groups or out_features % groups:
            raise ValueError(f"groups={groups} must divide {in_features} and {out_features}")
        get_padding(padding, 1, 1, 1)  # validates the mode early
        self.kernel_size = _pair(kernel_size)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.impl = impl
        self.dtype = dtype
        shape = (*self.kernel_size, in_features // groups, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array, pads=None) -> jax.Array:
        """``x`` convolved; ``pads`` (``((top, bottom), (left, right))``) replaces the padding
        mode's for this call."""
        if pads is None:
            pads = self._pads(x)
        y = conv_lib.conv2d(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            stride=self.stride,
            pads=pads,
            dilation=self.dilation,
            groups=self.groups,
            impl=self.impl,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y

    def _pads(self, x) -> list:
        return [
            get_padding(
                self.padding, x.shape[1 + i], self.kernel_size[i], self.stride, self.dilation
            )
            for i in range(2)
        ]

    def pointwise_bwd_native(self, x: jax.Array) -> bool:
        """Whether this call on ``x`` is a 1x1 convolution (no bias) whose both gradients come
        from the native 1x1 kernel (`conv_lib.pointwise_bwd_native`), which can also build the
        output gradient of a BatchNorm + ReLU after it (:meth:`BatchNorm.expanded_depthwise`)."""
        if self.bias is not None or self.groups != 1 or self.dilation != 1:
            return False
        if self.kernel_size != (1, 1) or self.stride != 1:
            return False
        x = jax.ShapeDtypeStruct(x.shape, self.dtype)
        w = jax.ShapeDtypeStruct(self.kernel.shape, self.dtype)
        return conv_lib.pointwise_bwd_native(x, w, self.stride, self._pads(x), self.impl)


class DepthwiseConv2d(nnx.Module):
    """Depthwise convolution (channel multiplier 1), kernel ``(kh, kw, 1, C)``; see above."""

    def __init__(
        self,
        features: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: str = "symmetric",
        impl: str = "auto",
        use_bias: bool = False,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        resolve_depthwise_impl(impl)  # validates
        get_padding(padding, 1, 1, 1)
        self.stride = stride
        self.padding = padding
        self.impl = impl
        self.dtype = dtype
        shape = (kernel_size, kernel_size, 1, features)
        self.kernel = nnx.Param(conv_init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = depthwise_conv(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            self.stride,
            self.padding,
            self.impl,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y

    def with_moments(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """``(self(x), moments)``: where the native kernels run (float32, no bias) and
        `batch_stats.NATIVE_DW_MOMENTS` is on, the output's per-channel ``[sum y, sum y * y]``
        taken by the forward kernel as it writes (`depthwise_lib.depthwise_conv_moments`), for
        the BatchNorm after it in training (:meth:`BatchNorm.takes_moments`); else None."""
        if not batch_stats.NATIVE_DW_MOMENTS or self.bias is not None:
            return self(x), None
        x, kernel = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        return depthwise_lib.depthwise_conv_moments(x, kernel, self.stride, self.padding, self.impl)


class BatchNorm(nnx.Module):
    """BatchNorm over the last (channel) axis; parameter names as ``nnx.BatchNorm``.

    ``scale``/``bias`` are float32 ``nnx.Param``; ``mean``/``var`` float32 ``nnx.BatchStat``.
    Statistics are computed in float32 over (N, H, W) - under jit with a batch sharded over devices
    XLA reduces them over the global batch. Running averages follow the Flax convention
    ``ra = momentum * ra + (1 - momentum) * batch`` (PyTorch momentum m == Flax 1 - m) with the
    biased batch variance. ``use_scale=False`` drops the scale (Keras ``scale=False``, as in
    Keras' Inception-v3). Written here rather than using ``nnx.BatchNorm`` because its indexed
    state update makes tracing deep networks quadratic (see :class:`Dropout`).
    """

    def __init__(
        self,
        features: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.9,
        dtype=jnp.float32,
        scale_init: Callable = _ONES,
        use_scale: bool = True,
        rngs,
    ):
        self.num_features = features
        self.epsilon = eps
        self.momentum = momentum
        self.dtype = dtype
        self.scale = (
            nnx.Param(scale_init(rngs.params(), (features,), jnp.float32)) if use_scale else None
        )
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))
        # Fine-tuning sets this on layers of frozen parts: they then always normalise with (and
        # never update) their running statistics, as Keras does for layers with trainable=False.
        self.frozen = False

    def __call__(self, x: jax.Array, *, use_running_average: bool, moments=None) -> jax.Array:
        """``x`` normalised; ``moments`` as in :meth:`activated`."""
        train = not (use_running_average or self.frozen)
        if self._native(x, use_running_average):
            return self._native_train(batch_stats.normalize_train, (x,), moments)[0]
        if not train:
            mean, var = self.mean.get_value(), self.var.get_value()
        else:
            axes = tuple(range(x.ndim - 1))
            xf = x.astype(jnp.float32)
            mean = jnp.mean(xf, axes)
            var = jnp.maximum(jnp.mean(jnp.square(xf), axes) - jnp.square(mean), 0.0)
            self._update_averages(mean, var)
        return self._normalize(x, mean, var)

    def _normalize(self, x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
        """``x`` normalised with ``mean`` and ``var``, scaled and shifted (the jax.numpy form)."""
        mul = jax.lax.rsqrt(var + self.epsilon)
        if self.scale is not None:
            mul = self.scale.get_value() * mul
        add = self.bias.get_value() - mean * mul
        return (x.astype(self.dtype) * mul.astype(self.dtype) + add.astype(self.dtype)).astype(
            self.dtype
        )

    def activated(
        self, x: jax.Array, act: str, *, use_running_average: bool, moments=None
    ) -> jax.Array:
        """``get_act(act)(self(x, ...))``. In training, where the native sums run and ``act`` is
        'relu' or 'relu6' (:meth:`_act_native`), through `batch_stats.normalize_act_train`,
        whose backward pass applies the activation's gradient inside BatchNorm's (the same values
        and gradients up to float rounding; `batch_stats.NATIVE_ACT` switches it off).
        ``moments``, if given, are ``x``'s per-channel ``[sum x, sum x * x]``
        (`batch_stats.channel_moments`, or a depthwise convolution's that computed ``x``), used
        where the native sums run (:meth:`takes_moments`) and ignored elsewhere."""
        if self._act_native(x, act, use_running_average):
            op = batch_stats.normalize_act_train
            return self._native_train(op, (x,), act, moments)[0]
        return get_act(act)(self(x, use_running_average=use_running_average, moments=moments))

    def takes_moments(self, x: jax.Array, *, use_running_average: bool) -> bool:
        """Whether this call normalises ``x`` with its batch statistics through the native sums,
        and so would use ``moments`` (:meth:`activated`, ``__call__``) instead of summing ``x``:
        a caller that can have them without a pass of their own computes them only then."""
        return self._native(x, use_running_average)

    def _act_native(self, x: jax.Array, act: str, use_running_average: bool) -> bool:
        """Whether :meth:`activated` goes through `batch_stats.normalize_act_train`."""
        return (
            act in batch_stats.CLIPPED_ACTS
            and batch_stats.NATIVE_ACT
            and self._native(x, use_running_average)
        )

    def depthwise_after(
        self,
        x: jax.Array,
        act: str,
        conv: DepthwiseConv2d,
        *,
        use_running_average: bool,
        moments: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        """``(conv(self.activated(x, act, ...)), y_moments)``. In training, where
        :meth:`activated` takes the native path and ``conv`` runs the native kernels (float32,
        no bias), through `batch_stats.normalize_act_depthwise_train`: the activation is computed
        inside the convolution's kernels and never written (the same values and gradients up to
        float rounding; `batch_stats.NATIVE_DEPTHWISE` switches it off). ``moments``: also give
        the output's moments where the forward kernel summed them (as
        :meth:`DepthwiseConv2d.with_moments`), for the BatchNorm after it; else None."""
        if self._depthwise_native(x, act, conv, use_running_average):
            op = batch_stats.normalize_act_depthwise_train
            return self._depthwise_train(op, (x,), act, conv, moments)
        z = self.activated(x, act, use_running_average=use_running_average)
        return conv.with_moments(z) if moments else (conv(z), None)

    def expanded_depthwise(
        self,
        x: jax.Array,
        expand: Conv2d,
        act: str,
        conv: DepthwiseConv2d,
        *,
        use_running_average: bool,
        moments: bool = False,
    ) -> tuple[jax.Array, jax.Array | None]:
        """:meth:`depthwise_after` of ``expand(x)``. In training, where that takes the native
        path and ``expand``, a 1x1 convolution, takes both gradients from the native 1x1 kernel
        (:meth:`Conv2d.pointwise_bwd_native`), through
        `batch_stats.expand_normalize_act_depthwise_train`: that kernel builds this BatchNorm's
        input gradient as it reads it, never written (the same values and gradients up to
        float rounding; `batch_stats.NATIVE_EXPAND` switches it off)."""
        y = jax.ShapeDtypeStruct((*x.shape[:-1], expand.kernel.shape[-1]), expand.dtype)
        if (
            batch_stats.NATIVE_EXPAND
            and expand.pointwise_bwd_native(x)
            and self._depthwise_native(y, act, conv, use_running_average)
        ):
            op = batch_stats.expand_normalize_act_depthwise_train
            x, w = x.astype(expand.dtype), expand.kernel.get_value().astype(expand.dtype)
            return self._depthwise_train(op, (x, w), act, conv, moments)
        y = expand(x)
        return self.depthwise_after(
            y, act, conv, use_running_average=use_running_average, moments=moments
        )

    def _depthwise_native(self, x, act: str, conv: DepthwiseConv2d, use_running_average: bool):
        """Whether :meth:`depthwise_after` of ``x`` (``shape``/``dtype`` suffice) goes through
        `batch_stats.normalize_act_depthwise_train`."""
        return (
            batch_stats.NATIVE_DEPTHWISE
            and conv.bias is None
            and self._act_native(x, act, use_running_average)
            and depthwise_lib.native_fits(x, conv.dtype, conv.impl)
        )

    def _depthwise_train(self, op, inputs, act: str, conv: DepthwiseConv2d, moments: bool):
        """``(y, y's moments or None)`` from ``op(*inputs, scale, bias, eps, act, kernel, stride,
        pads)``, a `batch_stats` op ending in the native depthwise convolution, with the running
        averages updated."""
        kernel = conv.kernel.get_value()
        shape = (*inputs[0].shape[:-1], kernel.shape[-1])
        pads = depthwise_lib.conv_pads(shape, kernel.shape, conv.stride, conv.padding)
        y, _, _, y_moments = self._native_train(op, inputs, act, kernel, int(conv.stride), pads)
        keep = moments and batch_stats.NATIVE_DW_MOMENTS
        return y, jax.lax.stop_gradient(y_moments) if keep else None

    def max_pooled(
        self, x: jax.Array, window: int, stride: int, padding: str, *, use_running_average: bool
    ) -> tuple[jax.Array, jax.Array]:
        """``(max_pool(y, window, stride, padding), y)`` with ``y = self(x, ...)``. In training,
        where the native kernels run both, the pool applies the normalisation to the taps it
        reads (`batch_stats.normalize_max_pool_train`): ``y`` is then only computed if the caller
        uses it (XLA drops it otherwise), and the running averages update once."""
        pads = pool.window_pads(x, window, stride, padding)
        if (
            batch_stats.NATIVE_POOLED
            and self._native(x, use_running_average)
            and pool.runs_native(x, window, stride, pads)
        ):
            op = batch_stats.normalize_max_pool_train
            z, mean, var = self._native_train(op, (x,), int(window), int(stride), pads)
            return z, self._normalize(x, mean, var)
        y = self(x, use_running_average=use_running_average)
        return max_pool(y, window, stride, padding), y

    def _native(self, x: jax.Array, use_running_average: bool) -> bool:
        """Whether this call normalises with ``x``'s batch statistics through the native sums
        (`batch_stats.native_fits`): training, not frozen."""
        train = not (use_running_average or self.frozen)
        return train and batch_stats.native_fits(x, self.dtype)

    def _native_train(self, op, inputs: tuple, *args) -> tuple[jax.Array, ...]:
        """``op(*inputs, scale, bias, eps, *args)``, a `batch_stats` training op giving
        ``(output, mean, var, ...)``, with the running averages updated from its statistics.
        ``inputs``: what this layer normalises, ``(x,)``, or what computes it, ``(x, w)`` (an
        expansion's input and kernel); the last one's last axis is this layer's features."""
        scale = self._scale(inputs[-1].shape[-1])
        out = op(*inputs, scale, self.bias.get_value(), self.epsilon, *args)
        self._update_averages(out[1], out[2])
        return out

    def _scale(self, features: int) -> jax.Array:
        """The scale parameter, or ones without one (``use_scale=False``)."""
        if self.scale is None:
            return jnp.ones((features,), jnp.float32)
        return self.scale.get_value()

    def _update_averages(self, mean: jax.Array, var: jax.Array) -> None:
        m = self.momentum
        self.mean.set_value(jax.lax.stop_gradient(m * self.mean.get_value() + (1 - m) * mean))
        self.var.set_value(jax.lax.stop_gradient(m * self.var.get_value() + (1 - m) * var))


def batch_norm(
    features: int,
    *,
    eps: float = 1e-5,
    momentum: float = 0.9,
    dtype=jnp.float32,
    scale_init: Callable = _ONES,
    rngs,
) -> BatchNorm:
    """BatchNorm over the channel axis; call as ``bn(x, use_running_average=not train)``."""
    return BatchNorm(
        features, eps=eps, momentum=momentum, dtype=dtype, scale_init=scale_init, rngs=rngs
    )


def _hard_sigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


# SiLU's gradient recomputes the sigmoid from the activation's input instead of keeping it from
# the forward pass. Autodiff of ``jax.nn.silu`` saves ``sigmoid(x)`` for the backward pass, so
# XLA:CPU wrote it out as a map of its own and read it back to form ``x * sigmoid(x)``: two loop
# fusions per activation, each reading the convolution's output (BatchNorm's apply is fused into
# both). With only ``x`` kept (itself BatchNorm's apply of a map that is kept anyway, which XLA
# fuses into each consumer), the forward pass is one fusion that reads the convolution's output
# once and writes the activation. Measured: docs/performance.md, "SiLU's gradient without the
# forward pass's sigmoid map".
SILU_RECOMPUTE = True


def silu(x: jax.Array) -> jax.Array:
    """``x * sigmoid(x)`` (``jax.nn.silu``); differentiated by recomputing the sigmoid (see
    ``SILU_RECOMPUTE``): the same values, gradients equal within float rounding."""
    return _silu_recompute(x) if SILU_RECOMPUTE else jax.nn.silu(x)


@jax.custom_vjp
def _silu_recompute(x):
    return jax.nn.silu(x)


def _silu_fwd(x):
    return jax.nn.silu(x), x


def _silu_bwd(x, g):
    # d/dx x sigmoid(x) = (1 + e + x e) / (1 + e)^2 with e = exp(-x) for x >= 0, and e (1 + e +
    # x) / (1 + e)^2 with e = exp(x) below: no overflow, no cancellation (within 2.3e-7 of the
    # float64 value, relative to the output gradient, against autodiff's 9.3e-7). Also not the
    # forward pass's expression, which XLA's common-subexpression elimination would merge with it
    # (keeping the sigmoid map after all), and one division, used once: XLA fuses all of it into
    # the consumer instead of writing a map of its own.
    e = jnp.exp(-jnp.abs(x))
    d = 1 + e
    return (g * (jnp.where(x >= 0, d + x * e, e * (d + x)) / (d * d)),)


_silu_recompute.defvjp(_silu_fwd, _silu_bwd)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "silu": silu,
    "swish": silu,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": lambda x: x * _hard_sigmoid(x),
    "identity": lambda x: x,
}


def get_act(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation function by name ('relu', 'relu6', 'silu'/'swish', 'gelu', ...)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}") from None


class SqueezeExcite(nnx.Module):
    """Squeeze-and-excitation (Hu et al., 2018) as in timm ``_efficientnet_blocks.SqueezeExcite``.

    Global average pool -> 1x1 conv ``conv_reduce`` (with bias) -> act -> 1x1 conv ``conv_expand``
    (with bias) -> gate -> rescale the input channels. The reduced width is chosen by the caller
    (EfficientNet: relative to the block's input channels, not the expanded ones).
    """

    def __init__(
        self,
        features: int,
        rd_features: int,
        *,
        act: str = "silu",
        gate: str = "sigmoid",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.act = act
        self.gate = gate
        self.conv_reduce = Conv2d(features, rd_features, 1, use_bias=True, dtype=dtype, rngs=rngs)
        self.conv_expand = Conv2d(rd_features, features, 1, use_bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """``x`` rescaled by its channel gates; in training, where BatchNorm's native sums run
        (float32 on CPU), through `batch_stats.rescale_channels`, whose gates' gradient is one
        native pass over the output gradient and ``x`` per image (``NATIVE_RESCALE``)."""
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = get_act(self.act)(self.conv_reduce(s))
        s = get_act(self.gate)(self.conv_expand(s)).astype(x.dtype)
        if train and batch_stats.NATIVE_RESCALE and batch_stats.native_fits(x, s.dtype):
            return batch_stats.rescale_channels(x, s)
        return x * s


class DropPath(nnx.Module):
    """Stochastic depth (Huang et al., 2016; timm ``DropPath``): drops a residual branch per sample.

    Implemented as :class:`Dropout` with the mask broadcast over H, W, C, so it draws from the
    module's 'dropout' RNG stream and ``nnx.reseed(model, dropout=key)`` reseeds it.
    """

    def __init__(self, rate: float, *, rngs: nnx.Rngs):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.dropout = dropout(rate, broadcast_dims=(1, 2, 3), rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.dropout(x, deterministic=not train)


def make_divisible(
    v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Rounds channels to the nearest multiple of ``divisor``, not going below ``round_limit * v``.

    Same rule as TF/timm ``make_divisible`` (MobileNetV2, EfficientNet ``round_channels``);
    EfficientNetV2-B* use ``round_limit=0`` (plain rounding).
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return int(new_v)


def round_channels(
    channels: int, multiplier: float = 1.0, divisor: int = 8, round_limit: float = 0.9
) -> int:
    """EfficientNet width scaling: ``make_divisible(channels * multiplier)`` (timm)."""
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier, divisor, round_limit=round_limit)


def round_repeats(repeats: int, multiplier: float) -> int:
    """EfficientNet depth scaling: ceil(repeats * multiplier)."""
    return int(math.ceil(multiplier * repeats))


def global_pool(x: jax.Array, kind: str = "avg") -> jax.Array:
    """Global spatial pooling of an NHWC map to ``[B, C]``.

    On CPU the average is a product with a vector of ones (accumulated in float32) over H * W:
    XLA:CPU hands a reduction to YNNPACK, whose reduction of ResNet-18's final 7x7x512 map took
    60 of 67 ms of thunk time in a batch-1 forward pass; as a product (XLA's dot path) the pass
    took 28.7 instead of 63.6 ms (docs/performance.md, "Global average pooling as a product")."""
    if kind == "avg" and jax.default_backend() == "cpu":
        b, h, w, c = x.shape
        ones = jnp.ones((h * w,), x.dtype)
        total = jnp.einsum(
            "bpc,p->bc", x.reshape(b, h * w, c), ones, preferred_element_type=jnp.float32
        )
        return (total / (h * w)).astype(x.dtype)
    if kind == "avg":
        return jnp.mean(x, axis=(1, 2))
    if kind == "max":
        return jnp.max(x, axis=(1, 2))
    raise ValueError(f"global pool must be 'avg' or 'max', got {kind!r}")


def avg_pool(
    x: jax.Array,
    window: int,
    stride: int,
    padding: str = "valid",
    count_include_pad: bool = True,
) -> jax.Array:
    """Average pooling; ``count_include_pad`` as in PyTorch ``AvgPool2d`` (default True)."""
    pads = [get_padding(padding, x.shape[1 + i], window, stride) for i in range(2)]
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    padding_ = ((0, 0), *pads, (0, 0))
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, padding_)
    if count_include_pad or all(p == (0, 0) for p in pads):
        return summed / (window * window)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, padding_)
    return summed / counts


# `avg_pool_pointwise` computes the cheaper of its two equal orders (False: the order the network
# is written in, its ``conv_first`` argument; tools/bench_ab.py --variant=pool_conv_as_written).
POOL_CONV_CHEAPER_ORDER = True


def avg_pool_pointwise(
    x: jax.Array,
    conv: Conv2d,
    window: int,
    stride: int,
    padding: str = "valid",
    count_include_pad: bool = True,
    *,
    conv_first: bool,
) -> jax.Array:
    """An average pool and a 1x1 stride-1 convolution without bias, in either order: the same
    function (float rounding aside), since the convolution mixes each pixel's channels and the pool
    sums pixels with weights that depend only on the position (also where the padding is not
    counted). Computes the order with fewer FLOPs: pooling first where the pool's stride shrinks
    the map (DenseNet's transitions, the convolution on a quarter of the pixels), convolving first
    where that narrows the channels the pool has to average (Inception's pool branches).
    ``conv_first`` is the order the network is written in, kept with `POOL_CONV_CHEAPER_ORDER` off.
    docs/performance.md, "DenseNet's transition: pool, then convolve" and "Inception's pool branch:
    convolve, then pool"."""
    if conv.kernel_size != (1, 1) or conv.stride != 1 or conv.bias is not None or conv.groups != 1:
        raise ValueError("avg_pool_pointwise needs a 1x1 stride-1 convolution without bias")

    def pooled(y):
        return avg_pool(y, window, stride, padding, count_include_pad)

    if POOL_CONV_CHEAPER_ORDER:
        cin, cout = conv.kernel.shape[2], conv.kernel.shape[3]
        pixels_in = x.shape[1] * x.shape[2]
        pads = [get_padding(padding, x.shape[1 + i], window, stride) for i in range(2)]
        pixels_out = math.prod(conv_lib.output_hw(x.shape[1:3], (window, window), stride, pads))
        pool_ops = window * window * pixels_out  # per channel
        conv_first = (
            pixels_in * cin * cout + pool_ops * cout < pixels_out * cin * cout + pool_ops * cin
        )
    return pooled(conv(x)) if conv_first else conv(pooled(x))


def classifier(features: int, num_classes: int, *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """The classifier every model exposes as ``model.head`` (float32, kernel (in, out))."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return nnx.Linear(features, num_classes, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class ConvNormAct(nnx.Module):
    """conv (no bias by default) -> BatchNorm -> activation ('identity' for none): the CNN unit.

    Attributes ``conv`` and ``bn`` give parameter paths like ``stem/conv/kernel``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: str = "symmetric",
        groups: int = 1,
        use_bias: bool = False,
        act: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.9,
        bn_scale_init: Callable = _ONES,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        get_act(act)
        self.act = act
        self.conv = Conv2d(
            in_features,
            out_features,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            use_bias=use_bias,
            dtype=dtype,
            rngs=rngs,
        )
        self.bn = batch_norm(
            out_features,
            eps=bn_eps,
            momentum=bn_momentum,
            dtype=dtype,
            scale_init=bn_scale_init,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.bn.activated(self.conv(x), self.act, use_running_average=not train)

    def max_pooled(self, x: jax.Array, window: int, stride: int, padding: str, *, train: bool):
        """``max_pool(self(x), window, stride, padding)``, for a ReLU unit computed as
        ``relu(max_pool(bn(conv(x))))`` (`norm_act_max_pooled`): the same values and gradients,
        while the activation and its gradient run on the pooled map, a quarter of the size for
        ResNet's stem (tested equal)."""
        return norm_act_max_pooled(
            self.conv(x), self.bn, self.act, window, stride, padding, train=train
        )[1]


def pooled_blocks(blocks, x: jax.Array, run_unit) -> tuple[jax.Array, collections.OrderedDict]:
    """The conv blocks of a plain conv net (VGG, the scratch CNNs), a pooling after each:
    ``run_unit(unit, x, last)`` gives ``(unit output, its pooling)`` for a block's last unit and
    ``(unit output, None)`` for the others. Returns the last block's pooling and the features:
    'stem' the first unit's output, 'stageK' the output of block K's last unit."""
    features = collections.OrderedDict()
    pooled = None
    for i, block in enumerate(blocks):
        if i > 0:
            x = pooled
        for k, unit in enumerate(block):
            x, pooled = run_unit(unit, x, k == len(block) - 1)
            if i == 0 and k == 0:
                features["stem"] = x
        features[f"stage{i + 1}"] = x
    return pooled, features


def unit_max_pooled(
    unit, x: jax.Array, window: int, stride: int, padding: str, *, act: str, train: bool
) -> tuple[jax.Array, jax.Array]:
    """``(unit(x), max_pool(unit(x), window, stride, padding))`` for a conv -> [BatchNorm] ->
    ``act`` unit with ``conv_out(x)`` (its convolution, padding included) and ``bn`` (or None):
    in training through `norm_act_max_pooled`; in evaluation as written, so the unit's map that
    Grad-CAM differentiates against is the one the pool reads."""
    if train:
        return norm_act_max_pooled(
            unit.conv_out(x), unit.bn, act, window, stride, padding, train=True
        )
    y = unit(x, train=False)
    return y, max_pool(y, window, stride, padding)


def norm_act_max_pooled(
    y: jax.Array, bn: BatchNorm | None, act: str, window: int, stride: int, padding: str, *, train
) -> tuple[jax.Array, jax.Array]:
    """``(a, max_pool(a, window, stride, padding))`` with ``a = act(bn(y))`` (no BatchNorm if
    ``bn`` is None): a conv unit's output and its pooling. Where `act_after_max_pool`, the pool
    takes ``bn(y)`` and the ReLU runs on the pooled map, and with BatchNorm in training the pool
    normalises the taps it reads (`BatchNorm.max_pooled`); ``a`` itself is then only computed if
    the caller uses it (XLA drops it otherwise). The same values and gradients as pooling ``a``
    (bit for bit for the ReLU's move; to float rounding with BatchNorm inside; tested)."""
    if not act_after_max_pool(act):
        a = get_act(act)(y) if bn is None else bn.activated(y, act, use_running_average=not train)
        return a, max_pool(a, window, stride, padding)
    if bn is None:
        pooled = max_pool(y, window, stride, padding)
    else:
        pooled, y = bn.max_pooled(y, window, stride, padding, use_running_average=not train)
    return jax.nn.relu(y), jax.nn.relu(pooled)
