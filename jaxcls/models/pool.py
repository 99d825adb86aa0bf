"""Max pooling whose gradient XLA:CPU runs fast.

The gradient of ``lax.reduce_window(max)`` is a select-and-scatter, which XLA:CPU expands into a
variadic reduce-window over the input and one int32 iota per dimension (the position of every
window's maximum) followed by a scatter. ResNet's 3x3 stride-2 stem pool pays it once per step:
with its gradient, 534 ms for a ``[32, 112, 112, 64]`` map (224 px inputs) and 25 ms at
``[32, 24, 24, 64]`` (48 px), measured on the project's 2-core machine, where 4 iotas alone took
23-36 ms of a ResNet-18 step at 48 px.

``impl='taps'`` keeps XLA's reduce-window for the output and, in a ``jax.custom_vjp``, finds each
window's maximal tap by comparing the window's strided slices (the taps, row-major) with the
output: the *first* tap equal to the maximum wins, as in XLA's select-and-scatter and PyTorch, so
ties (the zeros after a ReLU) route the gradient to the same input. The input gradient is the sum
over the taps of the output gradient where that tap won, placed back with a strided (interior)
pad: loop fusions only, 260 vs 534 ms and 10.5 vs 25 ms for the two maps above. Gradients equal
XLA's up to float summation order where windows overlap (tested).

``impl='native'`` computes the same as 'taps', bit for bit (except that a window holding a NaN
always gives NaN and sends no gradient, where XLA's reduce-window keeps or drops the NaN depending
on its place in the window), as two C++ kernels
(:mod:`jaxcls.native`, ``max_pool.cc``): one pass over the input for the output and each window's
winning tap (int8), one pass over the output gradient and the winners for the input gradient;
float32 NHWC, windows of at most 127 taps, padding smaller than the window. XLA:CPU made a padded
copy of the input, a reduce-window, tap comparisons and nine strided pads: at ``[32, 112, 112, 64]``
those took about 110 ms of ResNet-18's train step (docs/performance.md, "Max pooling natively").

``'auto'`` picks 'native' on CPU where the kernels take the input and could be built, else 'taps'
on CPU, and 'xla' elsewhere (GPUs and TPUs run select-and-scatter natively).

The native kernels also pool a BatchNorm's output without it being written (`affine_max_pool`,
`affine_max_pool_grad`; composed by `jaxcls.models.batch_stats.normalize_max_pool_train`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcls import native
from jaxcls.models.conv import (
    ImplSwitch,
    batch_parallel,
    get_padding,
    native_call,
    output_hw,
    override_impl,
    window_taps,
)

MAX_POOL_IMPLS = ("auto", "xla", "taps", "native")
# The native kernels' winners are int8: windows of at most this many taps.
NATIVE_MAX_TAPS = 127
MAX_POOL_SWITCH = ImplSwitch("max pool", MAX_POOL_IMPLS)


def set_max_pool_impl(impl: str | None) -> override_impl:
    """Overrides the max-pool implementation for ``impl='auto'`` (globally, or as a context
    manager for the functions traced inside it)."""
    return override_impl(MAX_POOL_SWITCH, impl)


def max_pool(
    x: jax.Array, window: int, stride: int, padding: str = "symmetric", impl: str = "auto"
) -> jax.Array:
    """Max pooling of an NHWC map with the same padding modes as convolutions (pads with -inf);
    ``impl`` as in the module docstring."""
    pads = window_pads(x, window, stride, padding)
    window, stride = int(window), int(stride)
    chosen = _chosen_impl(x, window, stride, pads, impl)
    if chosen == "native":
        return _max_pool_native(x, window, stride, pads)
    if chosen == "taps":
        return _max_pool_taps(x, window, stride, pads)
    return _reduce_window_max(x, window, stride, pads)


def window_pads(x, window: int, stride: int, padding: str) -> tuple:
    """The explicit ((top, bottom), (left, right)) padding of ``padding`` for pooling ``x``."""
    return tuple(
        tuple(int(v) for v in get_padding(padding, x.shape[1 + i], window, stride))
        for i in range(2)
    )


def _chosen_impl(x, window: int, stride: int, pads, impl: str = "auto") -> str:
    """The implementation `max_pool` runs: 'native' only where the kernels take ``x``, else
    'taps' for a 'native' request."""
    fits = native_fits(x, window, stride, pads)

    def default():
        if jax.default_backend() != "cpu":
            return "xla"
        return "native" if fits and native.available() else "taps"

    chosen = MAX_POOL_SWITCH.resolve(impl, default)
    if chosen == "native" and not fits:
        return "taps"
    return chosen


def runs_native(x, window: int, stride: int, pads) -> bool:
    """Whether `max_pool` (``impl='auto'``) runs the native kernels on ``x`` here."""
    return _chosen_impl(x, window, stride, pads) == "native"


def native_fits(x, window: int, stride: int, pads) -> bool:
    """Whether the native kernels take this pooling: a non-empty float32 NHWC batch and output,
    at most ``NATIVE_MAX_TAPS`` taps, padding before smaller than the window (after it: any)."""
    return (
        x.ndim == 4
        and x.dtype == jnp.float32
        and x.size > 0
        and window * window <= NATIVE_MAX_TAPS
        and all(0 <= lo < window for lo, _ in pads)
        and min(output_hw(x.shape[1:3], (window, window), stride, pads)) >= 1
    )


def _reduce_window_max(x, window, stride, pads):
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        ((0, 0), *pads, (0, 0)),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_taps(x, window, stride, pads):
    return _reduce_window_max(x, window, stride, pads)


def _max_pool_taps_fwd(x, window, stride, pads):
    y = _reduce_window_max(x, window, stride, pads)
    taps = window_taps(x, (window, window), y.shape[1:3], stride, pads, fill=-jnp.inf)
    # The first tap equal to the window's maximum (a window of NaNs: none; its gradient is 0).
    index = jnp.int8 if len(taps) <= 127 else jnp.int32
    winner = jnp.full(y.shape, -1, index)
    for k in reversed(range(len(taps))):
        winner = jnp.where(taps[k] == y, index(k), winner)
    return y, (winner, x.shape)


def _max_pool_taps_bwd(window, stride, pads, res, g):
    winner, (_, h, w, _) = res
    (ho, wo), zero = g.shape[1:3], jnp.zeros((), g.dtype)
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    dxp = None
    for k in range(window * window):
        i, j = divmod(k, window)
        # The transpose of tap (i, j)'s strided slice: back to its places in the padded input.
        part = jax.lax.pad(
            jnp.where(winner == k, g, zero),
            zero,
            (
                (0, 0, 0),
                (i, hp - i - (ho - 1) * stride - 1, stride - 1),
                (j, wp - j - (wo - 1) * stride - 1, stride - 1),
                (0, 0, 0),
            ),
        )
        dxp = part if dxp is None else dxp + part
    return (dxp[:, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w],)


_max_pool_taps.defvjp(_max_pool_taps_fwd, _max_pool_taps_bwd)


def _pool_attrs(window, stride, pads):
    return dict(stride=stride, pads=pads, window_h=window, window_w=window)


def _native_fwd_call(x, geometry, pads):
    window, stride = geometry
    ho, wo = output_hw(x.shape[1:3], (window, window), stride, pads)
    shape = (x.shape[0], ho, wo, x.shape[3])
    results = (jax.ShapeDtypeStruct(shape, x.dtype), jax.ShapeDtypeStruct(shape, jnp.int8))
    return native_call(
        "max pool", "jaxcls_max_pool_fwd", results, x, **_pool_attrs(window, stride, pads)
    )


def _native_bwd_call(g, winner, geometry, pads):
    window, stride, h, w = geometry
    result = jax.ShapeDtypeStruct((g.shape[0], h, w, g.shape[3]), g.dtype)
    return native_call(
        "max pool", "jaxcls_max_pool_bwd", result, g, winner, **_pool_attrs(window, stride, pads)
    )


# Per image: split along the batch over the devices of a data-parallel mesh.
_native_fwd = batch_parallel(_native_fwd_call, 1, 2, "b h w c -> b p q c, b p q c", kernel=False)
_native_bwd = batch_parallel(_native_bwd_call, 2, 1, "b p q c, b p q c -> b h w c", kernel=False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_native(x, window, stride, pads):
    return _native_fwd(x, (window, stride), pads)[0]


def _max_pool_native_fwd(x, window, stride, pads):
    y, winner = _native_fwd(x, (window, stride), pads)
    return y, (winner, x.shape)


def _max_pool_native_bwd(window, stride, pads, res, g):
    winner, (_, h, w, _) = res
    return (_native_bwd(g, winner, (window, stride, h, w), pads),)


_max_pool_native.defvjp(_max_pool_native_fwd, _max_pool_native_bwd)


# BatchNorm's apply inside the pool (training; `jaxcls.models.batch_stats.normalize_max_pool_train`
# composes these). ``a`` stacks per-channel vectors: (mul, shift) forward, (mul, alpha, beta,
# mean) backward (max_pool.cc).
def _affine_fwd_call(x, a, geometry, pads):
    window, stride = geometry
    ho, wo = output_hw(x.shape[1:3], (window, window), stride, pads)
    shape = (x.shape[0], ho, wo, x.shape[3])
    results = (
        jax.ShapeDtypeStruct(shape, x.dtype),
        jax.ShapeDtypeStruct(shape, jnp.int8),
        jax.ShapeDtypeStruct(shape, x.dtype),
    )
    return native_call(
        "max pool", "jaxcls_max_pool_affine_fwd", results, x, a, **_pool_attrs(window, stride, pads)
    )


def _affine_bwd_call(g, a, winner, x, geometry, pads):
    window, stride = geometry
    result = jax.ShapeDtypeStruct(x.shape, x.dtype)
    attrs = _pool_attrs(window, stride, pads)
    return native_call("max pool", "jaxcls_max_pool_affine_bwd", result, g, a, winner, x, **attrs)


_affine_fwd = batch_parallel(_affine_fwd_call, 1, 3, "b h w c, k c -> b p q c, b p q c, b p q c")
_affine_bwd = batch_parallel(_affine_bwd_call, 3, 1, "b p q c, k c, b p q c, b h w c -> b h w c")


def affine_max_pool(x, mul, shift, window: int, stride: int, pads):
    """``(max_pool(x * mul + shift), winners, picked)`` (per-channel ``mul``, ``shift``: [C]) in
    one pass over ``x``; ``picked`` is ``x`` at each window's winning tap (0 where none), so that
    sums over the pool's input gradient can be taken on the pooled map. No gradient of its own."""
    return _affine_fwd(x, jnp.stack([mul, shift]), (window, stride), pads)


def affine_max_pool_grad(g, winner, x, mul, alpha, beta, mean, window: int, stride: int, pads):
    """``mul * gx + alpha + beta * (x - mean)`` per channel, ``gx`` the pool's input gradient for
    output gradient ``g``: BatchNorm's backward pass, applied as the gradient is written out."""
    a = jnp.stack([mul, alpha, beta, mean])
    return _affine_bwd(g, a, winner, x, (window, stride), pads)
