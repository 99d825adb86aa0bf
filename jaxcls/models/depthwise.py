"""Depthwise convolution (channel multiplier 1) with a CPU-friendly implementation and backward.

Three implementations compute the same function, selected by ``impl``:

* ``'grouped'``: XLA's grouped convolution, ``feature_group_count=C`` (the fast one on GPU/TPU).
* ``'shifted'``: pad, then ``sum_{i,j} x_pad[:, i::s, j::s][:, :Ho, :Wo] * k[i, j]`` - one
  multiply-add per kernel tap over the whole feature map, which XLA:CPU fuses into one vectorised
  loop. On the project's 2-core CPU the grouped form was 13-25x slower forward and 5-18x slower in
  the gradient (shared/environment.md).

'shifted' has its own backward (a ``jax.custom_vjp``). Autodiff of the tap sum saves every tap -
a strided slice of the padded input - as a residual, so XLA materialised ``kh * kw`` copies of the
feature map per layer (25 for a 5x5 kernel) and read them back once per tap in the backward pass:
in an EfficientNet-B0 train step at batch 32 those copies were 40% of the CPU time. The custom
backward keeps only ``x`` and computes

* the input gradient as the same shifted form applied to the output cotangent, padded (and, for
  stride ``s > 1``, dilated with ``s - 1`` zeros between pixels) so that it is a stride-1
  correlation with the spatially flipped kernel;
* the kernel gradient per tap, ``dk[i, j] = sum_{b,h,w} x_pad[b, i + s*h, j + s*w] * g[b, h, w]``,
  as one variadic reduction with one accumulator per tap, which XLA fuses with the slicing
  (nothing materialised).

* ``'native'``: C++ loops for XLA:CPU (:mod:`jaxcls.native`, an XLA FFI custom call with its own
  backward), float32 only. XLA emits the tap sums above as vectorised loops, but a fused zero pad
  costs a bounds check per element and every reduction (the kernel gradient) is a scalar loop, so
  on this project's 2-core CPU the shifted form's forward + backward over EfficientNet-B0's
  depthwise layers took 3x PyTorch's time (tools/bench_ops.py); the native kernels run each pixel's
  channel vector as one vectorised loop and spread rows/images over XLA's thread pool.

``'auto'`` picks 'native' on CPU for float32 when the native kernels could be built (else
'shifted'), and 'grouped' elsewhere; :func:`set_depthwise_impl` overrides it globally or as a
context manager.
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
    override_impl,
    sum_over_images,
)

DEPTHWISE_IMPLS = ("auto", "grouped", "shifted", "native")

DEPTHWISE_SWITCH = ImplSwitch("depthwise", DEPTHWISE_IMPLS)


def set_depthwise_impl(impl: str | None) -> override_impl:
    """Overrides the depthwise implementation for modules built with ``impl='auto'``:
    ``set_depthwise_impl('grouped')`` globally, ``with set_depthwise_impl('shifted'): ...`` for a
    block (restoring the previous value after)."""
    return override_impl(DEPTHWISE_SWITCH, impl)


def _default_impl() -> str:
    if jax.default_backend() != "cpu":
        return "grouped"
    return "native" if native.available() else "shifted"


def resolve_depthwise_impl(impl: str = "auto") -> str:
    """Returns the implementation ``impl`` stands for given the override and the default backend
    ('native' on CPU where it could be built, 'shifted' on CPU otherwise, 'grouped' elsewhere).
    :func:`depthwise_conv` runs 'native' for float32 only (else 'shifted')."""
    return DEPTHWISE_SWITCH.resolve(impl, _default_impl)


def _tap(xp, i, j, stride, ho, wo):
    """``xp[:, i::stride, j::stride][:, :ho, :wo]`` as one strided slice."""
    b, _, _, c = xp.shape
    return jax.lax.slice(
        xp,
        (0, i, j, 0),
        (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
        (1, stride, stride, 1),
    )


def _shifted_sum(x, kernel, stride, pads):
    """Sum over taps of strided slices of the padded ``x`` times ``kernel[i, j, 0]``."""
    kh, kw = kernel.shape[:2]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            term = _tap(xp, i, j, stride, ho, wo) * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted(x, kernel, stride, pads):
    return _shifted_sum(x, kernel, stride, pads)


def _shifted_fwd(x, kernel, stride, pads):
    return _shifted_sum(x, kernel, stride, pads), (x, kernel)


def _add_all(a, b):
    return [u + v for u, v in zip(a, b)]


def _shifted_bwd(stride, pads, res, g):
    x, kernel = res
    kh, kw = kernel.shape[:2]
    _, h, w, _ = x.shape
    _, ho, wo, _ = g.shape
    # Input gradient: x[o] receives g[q] * k[i] wherever o = s*q + i - pad_lo. Dilating g by s and
    # padding it by (k - 1 - pad_lo) in front turns that into a stride-1 correlation with the
    # flipped kernel; the back padding makes the output exactly (h, w) (negative = crop).
    zero = jnp.zeros((), g.dtype)
    gp = jax.lax.pad(
        g,
        zero,
        (
            (0, 0, 0),
            (kh - 1 - pads[0][0], h + pads[0][0] - (ho - 1) * stride - 1, stride - 1),
            (kw - 1 - pads[1][0], w + pads[1][0] - (wo - 1) * stride - 1, stride - 1),
            (0, 0, 0),
        ),
    )
    flipped = kernel[::-1, ::-1].astype(g.dtype)
    dx = _shifted_sum(gp, flipped, 1, ((0, 0), (0, 0))).astype(x.dtype)
    # Kernel gradient: the (batch, height, width) sums of every tap's product with g, as ONE
    # variadic reduction (one accumulator per tap) that XLA fuses with the slicing: separate
    # per-tap sums went to a library reduction that needed each tap materialised first (3-5x
    # slower). On maps of 56x56 and larger, reducing over the batch first and then over (h, w)
    # measured 1.3-1.7x faster than one reduction over all three axes (slower below).
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    products = [
        (_tap(xp, i, j, stride, ho, wo) * g).astype(jnp.float32)
        for i in range(kh)
        for j in range(kw)
    ]
    zeros = [jnp.zeros((), jnp.float32)] * len(products)
    if ho * wo >= 56 * 56:
        partial = jax.lax.reduce(products, zeros, _add_all, (0,))
        sums = [jnp.sum(p, (0, 1)) for p in partial]
    else:
        sums = jax.lax.reduce(products, zeros, _add_all, (0, 1, 2))
    dk = jnp.stack(sums).reshape(kernel.shape).astype(kernel.dtype)
    return dx, dk


_shifted.defvjp(_shifted_fwd, _shifted_bwd)


def _output(x, kh: int, kw: int, stride: int, pads) -> jax.ShapeDtypeStruct:
    """The output's shape and dtype for (local) ``x`` and a ``kh`` x ``kw`` kernel."""
    b, h, w, c = x.shape
    ho = (h + pads[0][0] + pads[0][1] - kh) // stride + 1
    wo = (w + pads[1][0] + pads[1][1] - kw) // stride + 1
    return jax.ShapeDtypeStruct((b, ho, wo, c), x.dtype)


def _per_image_moments(x) -> jax.ShapeDtypeStruct:
    """The per-image moments a forward kernel returns beside its output, ``[B, 2, C]``."""
    return jax.ShapeDtypeStruct((x.shape[0], 2, x.shape[-1]), x.dtype)


def _native_fwd_call(x, kernel, stride, pads):
    """The forward FFI call on (local) ``x`` and the ``(kh, kw, C)`` kernel."""
    out = _output(x, *kernel.shape[:2], stride, pads)
    return native_call(
        "depthwise", "jaxcls_depthwise_fwd", out, x, kernel, stride=stride, pads=pads
    )


def _native_fwd_moments_call(x, kernel, stride, pads):
    """The same, also returning the output's moments per image (`_per_image_moments`)."""
    out = (_output(x, *kernel.shape[:2], stride, pads), _per_image_moments(x))
    return native_call(
        "depthwise", "jaxcls_depthwise_fwd_moments", out, x, kernel, stride=stride, pads=pads
    )


def _native_bwd_call(x, kernel, g, stride, pads):
    """The backward FFI call: ``(dx, kernel gradient per image [B, kh, kw, C])``."""
    b, _, _, c = x.shape
    kh, kw = kernel.shape[:2]
    out = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct((b, kh, kw, c), x.dtype))
    return native_call(
        "depthwise", "jaxcls_depthwise_bwd", out, x, kernel, g, stride=stride, pads=pads
    )


_native_fwd_parallel = batch_parallel(_native_fwd_call, 1, 1, "b h w c, i j c -> b p q c")
_native_fwd_moments_parallel = batch_parallel(
    _native_fwd_moments_call, 1, 2, "b h w c, i j c -> b p q c, b m c"
)
_native_bwd_parallel = batch_parallel(
    _native_bwd_call, 2, 2, "b h w c, i j c, b p q c -> b h w c, b i j c"
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _native(x, kernel, stride, pads):
    kh, kw, _, c = kernel.shape
    return _native_fwd_parallel(x, kernel.reshape(kh, kw, c), stride, pads)


def _native_fwd(x, kernel, stride, pads):
    return _native(x, kernel, stride, pads), (x, kernel)


def _native_bwd(stride, pads, res, g):
    x, kernel = res
    kh, kw, _, c = kernel.shape
    dx, dk_per_image = _native_bwd_parallel(x, kernel.reshape(kh, kw, c), g, stride, pads)
    return dx, sum_over_images(dk_per_image).reshape(kernel.shape)


_native.defvjp(_native_fwd, _native_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _native_moments(x, kernel, stride, pads):
    """``(y, moments)``: :func:`_native`'s output and its per-channel ``[sum y, sum y * y]``
    over the batch ([2, C]), the forward kernel's per-image sums added up."""
    kh, kw, _, c = kernel.shape
    y, per_image = _native_fwd_moments_parallel(x, kernel.reshape(kh, kw, c), stride, pads)
    return y, sum_over_images(per_image)


def _native_moments_fwd(x, kernel, stride, pads):
    return _native_moments(x, kernel, stride, pads), (x, kernel)


def _native_moments_bwd(stride, pads, res, cts):
    # The moments are constants for the BatchNorm that takes them (it differentiates through its
    # statistics itself); `depthwise_conv_moments` stops their gradient.
    return _native_bwd(stride, pads, res, cts[0])


_native_moments.defvjp(_native_moments_fwd, _native_moments_bwd)


# The native kernels with BatchNorm's apply and a clipped activation (ReLU, ReLU6) on their input,
# `jaxcls.models.batch_stats.normalize_act_depthwise_train`'s: the activation is computed row by
# row into a ring of rows in a thread's buffer as the kernels first read each row, so it is never
# written to memory, and the backward kernel takes BatchNorm's clipped sums over each
# input-gradient row right after writing it (while it is in cache). The kernel operand ("packed", [kh * kw + 2, C]) is the
# kernel's taps, then BatchNorm's per-channel mul and shift (the activation takes
# ``x * mul + shift``); the backward's second result, per image, the kernel gradient's taps, then
# the input gradient's sum and its sum times ``x`` where the activation passes its gradient.
def pack_affine(kernel: jax.Array, mul: jax.Array, shift: jax.Array) -> jax.Array:
    """The packed operand of the affine kernels from a ``(kh, kw, 1, C)`` kernel."""
    kh, kw, _, c = kernel.shape
    return jnp.concatenate([kernel.reshape(kh * kw, c), mul[None], shift[None]])


def native_fits(x: jax.Array, kernel_dtype, impl: str = "auto") -> bool:
    """Whether :func:`depthwise_conv` of ``x`` with ``impl`` runs the native kernels (float32)."""
    return (
        resolve_depthwise_impl(impl) == "native"
        and x.dtype == jnp.float32
        and jnp.dtype(kernel_dtype) == jnp.float32
    )


def conv_pads(x_shape, kernel_shape, stride: int, padding: str):
    """The explicit ``((top, bottom), (left, right))`` padding :func:`depthwise_conv` uses."""
    return tuple(
        tuple(int(v) for v in get_padding(padding, x_shape[axis], kernel_shape[axis - 1], stride))
        for axis in (1, 2)
    )


@functools.cache
def affine_calls(kw: int, hi: float):
    """``(forward, backward)``, the batch-parallel affine kernels for kernels ``kw`` wide and the
    activation's upper end ``hi``: ``forward(x, packed, stride, pads) -> (y, per-image moments
    of y [B, 2, C])`` (as the plain kernels' in `depthwise_conv_moments`) and
    ``backward(x, packed, g, stride, pads) -> (input gradient, per-image [B, kh * kw + 2, C])``."""

    def forward(x, packed, stride, pads):
        out = (_output(x, (packed.shape[0] - 2) // kw, kw, stride, pads), _per_image_moments(x))
        return native_call(
            "depthwise", "jaxcls_depthwise_affine_fwd", out, x, packed,
            stride=stride, pads=pads, kw=kw, hi=float(hi),
        )  # fmt: skip

    def backward(x, packed, g, stride, pads):
        out = (
            jax.ShapeDtypeStruct(x.shape, x.dtype),
            jax.ShapeDtypeStruct((x.shape[0], *packed.shape), x.dtype),
        )
        return native_call(
            "depthwise", "jaxcls_depthwise_affine_bwd", out, x, packed, g,
            stride=stride, pads=pads, kw=kw, hi=float(hi),
        )  # fmt: skip

    return (
        batch_parallel(forward, 1, 2, "b h w c, t c -> b p q c, b m c"),
        batch_parallel(backward, 2, 2, "b h w c, t c, b p q c -> b h w c, b t c"),
    )


def _resolved(x: jax.Array, kernel: jax.Array, impl: str) -> str:
    """The implementation :func:`depthwise_conv` runs for ``x``, ``kernel`` and ``impl``."""
    _, _, one, c = kernel.shape
    if one != 1 or x.shape[-1] != c:
        raise ValueError(f"depthwise kernel {kernel.shape} does not match input {x.shape}")
    resolved = resolve_depthwise_impl(impl)
    if resolved == "native" and not native_fits(x, kernel.dtype, impl):
        return "shifted"  # the native kernels are float32-only
    return resolved


def depthwise_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: str, impl: str = "auto"
) -> jax.Array:
    """Depthwise convolution of NHWC ``x`` with a ``(kh, kw, 1, C)`` kernel.

    ``padding`` is a mode of :func:`jaxcls.models.conv.get_padding`; ``impl`` as in the module
    docstring.
    """
    resolved = _resolved(x, kernel, impl)
    pads = conv_pads(x.shape, kernel.shape, stride, padding)
    if resolved == "grouped":
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(stride, stride),
            padding=pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=kernel.shape[-1],
        )
    if resolved == "native":
        return _native(x, kernel, int(stride), pads)
    return _shifted(x, kernel, int(stride), pads)


def depthwise_conv_moments(
    x: jax.Array, kernel: jax.Array, stride: int, padding: str, impl: str = "auto"
) -> tuple[jax.Array, jax.Array | None]:
    """``(depthwise_conv(x, kernel, ...), moments)``: where the native kernels run, ``moments``
    are the output's per-channel ``[sum y, sum y * y]`` over the batch ([2, C], as
    `batch_stats.channel_moments` gives them, constants without a gradient), taken by the forward
    kernel over each output row right after writing it, for the BatchNorm that follows; else
    None (the output as :func:`depthwise_conv`'s)."""
    if _resolved(x, kernel, impl) != "native":
        return depthwise_conv(x, kernel, stride, padding, impl), None
    pads = conv_pads(x.shape, kernel.shape, stride, padding)
    y, moments = _native_moments(x, kernel, int(stride), pads)
    return y, jax.lax.stop_gradient(moments)
