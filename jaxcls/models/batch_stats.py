"""BatchNorm in training with its per-channel sums as native CPU kernels, one pass each way.

XLA:CPU computes a BatchNorm layer's batch statistics as two reductions over the activations (the
mean and the mean of squares; YNNPACK kernels), and autodiff adds two more in the backward pass
(the sums of the output gradient and of its product with the input). Each reads a whole
activation tensor from memory: in ResNet-18's train step at 224 px (batch 32, one device) the 80
reductions of its 20 layers took 105-130 ms of 1.53-1.57 s. The train step with these kernels:
EfficientNet-B0 1.07x, ResNet-50 1.03x, ResNet-18 1.02x (docs/performance.md). :func:`normalize_train` is the same function
as ``layers.BatchNorm``'s training branch with a custom VJP whose sums come from
``jaxcls/native/channel_sums.cc``: both of the forward pass's in one pass over ``x``, both of
the backward pass's in one pass over the gradient and ``x``; the rest is elementwise and fused
by XLA. Over a batch sharded across devices each device sums its shard and the sums are added
(``custom_partitioning``), as XLA's own reductions do.

``layers.BatchNorm`` uses it on CPU for float32 NHWC activations where the native kernels could
be built and ``NATIVE_BATCH_STATS`` is on (tools/bench_ab.py ``--variant=batch_stats_xla``
turns it off); elsewhere it keeps the jax.numpy form. The two agree to float rounding (tested):
the variance is ``E[x^2] - E[x]^2`` (clamped at 0) in both, and the native sums add blocks of
256 pixels in double, in an order that does not depend on the thread count.

:func:`normalize_max_pool_train` is the same followed by the native max pool, with the apply done
inside the pool's kernels (``layers.BatchNorm.max_pooled``; ``NATIVE_POOLED``).
:func:`normalize_act_train` takes the ReLU's or ReLU6's gradient inside BatchNorm's backward
(``NATIVE_ACT``), and the moments of its input where the caller has them
(:func:`channel_moments`; DenseNet's blocks); :func:`normalize_act_depthwise_train` is that
followed by the native depthwise convolution, the activation computed inside its kernels
(``NATIVE_DEPTHWISE``; MobileNetV2's blocks). A BatchNorm after a native depthwise convolution
takes the moments its forward kernel summed as it wrote (``NATIVE_DW_MOMENTS``; MobileNetV2's and
EfficientNet's blocks). :func:`expand_normalize_act_depthwise_train` is
:func:`normalize_act_depthwise_train` after a 1x1 expansion whose native both-gradients kernel
builds BatchNorm's input gradient as it reads it (``NATIVE_EXPAND``; MobileNetV2's expansions
with at most 48 input channels). :func:`rescale_channels` is a squeeze-excite's ``x * gates``
with the gates' gradient from native per-image sums (``NATIVE_RESCALE``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcls import native
from jaxcls.models import conv, depthwise, pool

# BatchNorm's sums run as the native kernels on CPU (see the module docstring).
NATIVE_BATCH_STATS = True
# ... and a BatchNorm followed by a native max pool in training runs its apply inside the pool
# (`normalize_max_pool_train`; tools/bench_ab.py --variant=bn_pool_unfused turns it off).
NATIVE_POOLED = True
# ... and a BatchNorm followed by a ReLU or ReLU6 in training takes the activation's gradient
# inside its own backward pass (`normalize_act_train`; tools/bench_ab.py --variant=bn_act_unfused
# turns it off).
NATIVE_ACT = True
# ... and a BatchNorm followed by a ReLU or ReLU6 and a native depthwise convolution in training
# runs its apply and backward inside the convolution's kernels (`normalize_act_depthwise_train`;
# tools/bench_ab.py --variant=bn_dw_unfused turns it off).
NATIVE_DEPTHWISE = True
# ... and a BatchNorm after a native depthwise convolution in training takes its moments from the
# convolution's forward kernel, which sums each output row right after writing it
# (`depthwise.depthwise_conv_moments`; tools/bench_ab.py --variant=dw_moments_separate turns it
# off).
NATIVE_DW_MOMENTS = True
# ... and a 1x1 convolution before such a BatchNorm, ReLU6 and depthwise convolution whose both
# gradients come from the native 1x1 kernel builds BatchNorm's input gradient inside that kernel
# (`expand_normalize_act_depthwise_train`; tools/bench_ab.py --variant=bn_expand_unfused turns
# it off).
NATIVE_EXPAND = True
# ... and a squeeze-excite's gates take their gradient from the native per-image sums in training
# (`rescale_channels`; tools/bench_ab.py --variant=se_grad_xla turns it off).
NATIVE_RESCALE = True


def native_fits(x: jax.Array, dtype) -> bool:
    """Whether :func:`normalize_train` takes ``x`` (computed in ``dtype``): on CPU, float32 image
    batches (4-D), the native kernels available and ``NATIVE_BATCH_STATS`` on."""
    return (
        NATIVE_BATCH_STATS
        and x.ndim == 4
        and x.dtype == jnp.float32
        and jnp.dtype(dtype) == jnp.float32
        and x.size > 0
        and jax.default_backend() == "cpu"
        and native.available()
    )


def _sums_call(target: str, *args, **attrs):
    # ``per_image`` travels with the FFI attributes (custom_partitioning cannot take a
    # keyword-only argument) and is not one.
    per_image = attrs.pop("per_image", False)
    b, c = args[0].shape[0], args[0].shape[-1]
    out = (jax.ShapeDtypeStruct((b, c) if per_image else (c,), jnp.float32),) * 2
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(*args, **attrs)


def _summed_over_batch(
    target: str, n_images: int, rule: str, n_vectors: int = 0, per_image: bool = False, **attrs
):
    """The native sums ``target`` of ``n_images`` image batches (and ``n_vectors`` per-channel
    arrays after them, replicated; ``attrs`` the call's attributes) as a
    ``custom_partitioning``: over a batch sharded across devices each device sums its images
    and the two results are added over the devices; or, ``per_image``, the sums are per image
    ([B, C]) and stay split along the batch as the images are."""
    fn = functools.partial(_sums_call, target, per_image=per_image, **attrs)
    wrapped = custom_partitioning(fn)

    def results(mesh, arg_shapes):
        axis = conv.batch_axis(arg_shapes[0].sharding) if per_image else None
        return (NamedSharding(mesh, P(axis)),) * 2

    def infer(mesh, arg_shapes, result_shape):
        return results(mesh, arg_shapes)

    def partition(mesh, arg_shapes, result_shape):
        axis = conv.batch_axis(arg_shapes[0].sharding)
        args = (NamedSharding(mesh, P(axis)),) * n_images + (NamedSharding(mesh, P()),) * n_vectors

        def lower(*a):
            sums = fn(*a)
            return jax.lax.psum(sums, axis) if axis is not None and not per_image else sums

        return mesh, lower, results(mesh, arg_shapes), args

    wrapped.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule)
    return wrapped


_moments = _summed_over_batch("jaxcls_channel_moments", 1, "b h w c -> c, c")
_dots = _summed_over_batch("jaxcls_channel_dots", 2, "b h w c, b h w c -> c, c")
_image_dots = _summed_over_batch(
    "jaxcls_image_channel_dots", 2, "b h w c, b h w c -> b c, b c", per_image=True
)


@jax.custom_vjp
def rescale_channels(x, gates):
    """``x * gates``: a batch [B, H, W, C] rescaled by per-image channel gates [B, 1, 1, C] (a
    squeeze-excite's). The gates' gradient, ``sum over (H, W) of g * x``, is the native
    ``jaxcls_image_channel_dots`` (one pass over ``g`` and ``x`` per image, as BatchNorm's sums)
    instead of XLA's reduction; float32 on CPU where the kernels run (``NATIVE_RESCALE``)."""
    return x * gates


def _rescale_fwd(x, gates):
    return x * gates, (x, gates)


def _rescale_bwd(res, g):
    x, gates = res
    return g * gates, _image_dots(g, x)[1].reshape(gates.shape)


rescale_channels.defvjp(_rescale_fwd, _rescale_bwd)


@functools.cache
def _clipped_dots(hi: float):
    """(sum gz, sum gz * x) over the elements where ``0 < x * mul + shift < hi``: called as
    ``_clipped_dots(hi)(gz, x, mul, shift)``."""
    rule = "b h w c, b h w c, c, c -> c, c"
    return _summed_over_batch(
        "jaxcls_channel_dots_clipped", 2, rule, n_vectors=2, hi=np.float32(hi)
    )


def channel_moments(x):
    """``(sum x, sum x * x)`` per channel of ``x`` [B, H, W, C] over the batch (the native sums, a
    device's images each, added), as constants (no gradient flows through them): the moments
    BatchNorm's statistics come from, for a caller that keeps them to give
    :func:`normalize_act_train` (``moments``) instead of summing ``x`` again."""
    return _moments(jax.lax.stop_gradient(x))


def _statistics(x, scale, bias, eps, moments=None):
    """``(mean, var, rstd, mul, shift)``: ``x``'s batch statistics (from its `channel_moments`,
    summed here unless given) and the per-channel map ``x * mul + shift`` that normalises,
    scales and shifts it."""
    total, squares = _moments(x) if moments is None else moments
    n = x.size // x.shape[-1]
    mean = total / n
    var = jnp.maximum(squares / n - jnp.square(mean), 0.0)
    rstd = jax.lax.rsqrt(var + eps)
    mul = scale * rstd
    return mean, var, rstd, mul, bias - mean * mul


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_train(x, scale, bias, eps, moments=None):
    """``(y, mean, var)``: ``x`` [B, H, W, C] normalised with its batch statistics, scaled and
    shifted (``scale``, ``bias``: [C]), and those statistics (the biased variance). ``moments``:
    ``x``'s `channel_moments` where the caller has them (as :func:`normalize_act_train`'s)."""
    return _normalize_fwd(x, scale, bias, eps, moments)[0]


def _normalize_fwd(x, scale, bias, eps, moments=None):
    mean, var, rstd, mul, shift = _statistics(x, scale, bias, eps, moments)
    return (x * mul + shift, mean, var), (x, mean, rstd, mul)


def _normalize_bwd(eps, res, cts):
    x, mean, rstd, mul = res
    gy, gmean, gvar = cts
    grads = _backward(x, mean, rstd, mul, gy, _dots(gy, x), gmean, gvar)
    return (*grads, None)  # moments: constants


def _backward(x, mean, rstd, mul, gy, sums, gmean, gvar):
    """BatchNorm's ``(dx, dscale, dbias)`` from its output gradient ``gy`` and ``sums`` = (sum gy,
    sum gy * x) per channel."""
    total, dot = sums
    n = x.size // x.shape[-1]
    # sum over the batch of gy * (x - mean) * rstd, from the two sums of one pass.
    dscale = (dot - mean * total) * rstd
    centred = x - mean
    dx = mul * (gy - total / n - centred * (rstd * dscale / n))
    # The statistics' own cotangents (zero when they only update running averages).
    dx = dx + gmean / n + centred * (2.0 * gvar / n)
    return dx, dscale, total


def _coefficients(x, mean, rstd, mul, sums, gmean, gvar):
    """``(dscale, alpha, beta)``: :func:`_backward`'s scale gradient, and its input gradient
    written as ``mul * gy + alpha + beta * (x - mean)`` (per-channel ``alpha`` and ``beta``) for
    a kernel that applies it as it reads ``gy`` and ``x``."""
    total, dot = sums
    n = x.size // x.shape[-1]
    dscale = (dot - mean * total) * rstd
    alpha = gmean / n - mul * (total / n)
    beta = 2.0 * gvar / n - mul * (rstd * dscale / n)
    return dscale, alpha, beta


normalize_train.defvjp(_normalize_fwd, _normalize_bwd)


# The activations `normalize_act_train` takes, by the upper end of the range where each passes
# its gradient (0 < y < hi), as jax.nn.relu's and jax.nn.relu6's own derivatives do.
CLIPPED_ACTS = {"relu": float("inf"), "relu6": 6.0}


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def normalize_act_train(x, scale, bias, eps, act, moments=None):
    """``(act(y), mean, var)`` with ``(y, mean, var) = normalize_train(x, scale, bias, eps)`` and
    ``act`` 'relu' or 'relu6' (`CLIPPED_ACTS`). In the backward pass BatchNorm's two sums are
    taken over the activation's output gradient ``gz`` where ``0 < y < hi`` (the native
    ``jaxcls_channel_dots_clipped``), and the activation's gradient is applied inside
    BatchNorm's elementwise backward, ``y`` recomputed from ``x`` there: the activation's
    gradient ``where(0 < y < hi, gz, 0)`` is never written, one full-size write and two reads
    fewer per call. Equal to ``act(normalize_train(...))`` up to float rounding (tested).

    ``moments``: ``x``'s `channel_moments` where the caller has them (DenseNet concatenates its
    features' moments as it concatenates the features; a native depthwise convolution's forward
    kernel sums its output as it writes it, `depthwise.depthwise_conv_moments`), else summed
    here. Concatenated moments give the same result to the bit (a channel's sums do not depend on
    the other channels); the depthwise kernel's add the same values in another order. The
    backward pass is unchanged (it differentiates through the statistics whichever way they
    came)."""
    return _normalize_act_fwd(x, scale, bias, eps, act, moments)[0]


def _normalize_act_fwd(x, scale, bias, eps, act, moments=None):
    mean, var, rstd, mul, shift = _statistics(x, scale, bias, eps, moments)
    z = getattr(jax.nn, act)(x * mul + shift)
    return (z, mean, var), (x, mean, rstd, mul, shift)


def _normalize_act_bwd(eps, act, res, cts):
    x, mean, rstd, mul, shift = res
    gz, gmean, gvar = cts
    sums = _clipped_dots(CLIPPED_ACTS[act])(gz, x, mul, shift)
    grads = _act_backward(x, mean, rstd, mul, shift, act, gz, sums, gmean, gvar)
    return (*grads, None)  # moments: constants


def _act_backward(x, mean, rstd, mul, shift, act, gz, sums, gmean, gvar):
    """BatchNorm's ``(dx, dscale, dbias)`` with ``act`` after it, from the activation's output
    gradient ``gz`` and BatchNorm's ``sums`` over the activation's input gradient (the clipped
    sums): the activation's gradient is applied inside the elementwise backward."""
    y = x * mul + shift  # as the forward pass computed it (one rounding where XLA has FMA)
    gy = jnp.where((y > 0) & (y < CLIPPED_ACTS[act]), gz, 0.0)
    return _backward(x, mean, rstd, mul, gy, sums, gmean, gvar)


normalize_act_train.defvjp(_normalize_act_fwd, _normalize_act_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 6, 7))
def normalize_act_depthwise_train(x, scale, bias, eps, act, kernel, stride, pads):
    """``(depthwise_conv(z, kernel), mean, var, moments)`` with ``(z, mean, var) =
    normalize_act_train(x, scale, bias, eps, act)``, the depthwise convolution native
    (``kernel`` [kh, kw, 1, C], ``pads`` explicit), without ``z`` ever written: the kernels
    compute it row by row as they read ``x`` (`depthwise.affine_calls`), in the forward pass and
    again in the backward pass for the kernel's gradient. The backward kernel also takes
    BatchNorm's two clipped sums over the input gradient as it writes it, so the sums' own pass
    (``jaxcls_channel_dots_clipped``) goes too; BatchNorm's elementwise backward, with the
    activation's gradient, is :func:`normalize_act_train`'s. Equal to the unfused form up to
    float rounding (tested). ``moments``: the convolution output's, as
    `depthwise.depthwise_conv_moments` gives them (constants), for the BatchNorm after it."""
    return _normalize_act_dw_fwd(x, scale, bias, eps, act, kernel, stride, pads)[0]


def _normalize_act_dw_fwd(x, scale, bias, eps, act, kernel, stride, pads):
    mean, var, rstd, mul, shift = _statistics(x, scale, bias, eps)
    packed = depthwise.pack_affine(kernel, mul, shift)
    forward, _ = depthwise.affine_calls(kernel.shape[1], CLIPPED_ACTS[act])
    y, moments = forward(x, packed, stride, pads)
    out = (y, mean, var, conv.sum_over_images(moments))
    return out, (x, packed, mean, rstd, mul, shift, kernel)


def _depthwise_affine_bwd(act, stride, pads, x, packed, kernel, gy):
    """``(gz, sums, kernel gradient)``: the affine backward kernel's input gradient (the
    activation's output gradient), BatchNorm's clipped sums over it and the convolution's kernel
    gradient."""
    _, backward = depthwise.affine_calls(kernel.shape[1], CLIPPED_ACTS[act])
    gz, per_image = backward(x, packed, gy, stride, pads)
    summed = conv.sum_over_images(per_image)
    taps = summed.shape[0] - 2
    return gz, (summed[taps], summed[taps + 1]), summed[:taps].reshape(kernel.shape)


def _normalize_act_dw_bwd(eps, act, stride, pads, res, cts):
    x, packed, mean, rstd, mul, shift, kernel = res
    gy, gmean, gvar, _ = cts  # the output's moments: constants (`BatchNorm.depthwise_after`)
    gz, sums, dkernel = _depthwise_affine_bwd(act, stride, pads, x, packed, kernel, gy)
    dx, dscale, dbias = _act_backward(x, mean, rstd, mul, shift, act, gz, sums, gmean, gvar)
    return dx, dscale, dbias, dkernel


normalize_act_depthwise_train.defvjp(_normalize_act_dw_fwd, _normalize_act_dw_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 7, 8))
def expand_normalize_act_depthwise_train(x, w, scale, bias, eps, act, kernel, stride, pads):
    """:func:`normalize_act_depthwise_train` of ``conv.pointwise(x, w)``, a 1x1 convolution
    (``w`` [1, 1, C, O]; MobileNetV2's expansions) whose both gradients the native 1x1 kernel
    computes (`conv.pointwise_bwd_native`): that kernel also builds BatchNorm's input gradient,
    with the activation's gradient, chunk by chunk from the activation's output gradient and the
    convolution's output (`conv.pointwise_bn_grads`), so that gradient is never written and
    read back: two full passes over the expanded map fewer. The forward pass is the unfused
    one's; the gradients equal it up to float rounding (tested)."""
    return _expand_dw_fwd(x, w, scale, bias, eps, act, kernel, stride, pads)[0]


def _expand_dw_fwd(x, w, scale, bias, eps, act, kernel, stride, pads):
    out, res = _normalize_act_dw_fwd(
        conv.pointwise(x, w), scale, bias, eps, act, kernel, stride, pads
    )
    return out, (x, w, *res)


def _expand_dw_bwd(eps, act, stride, pads, res, cts):
    x, w, y, packed, mean, rstd, mul, shift, kernel = res
    gy, gmean, gvar, _ = cts  # the output's moments: constants
    gz, sums, dkernel = _depthwise_affine_bwd(act, stride, pads, y, packed, kernel, gy)
    dscale, alpha, beta = _coefficients(y, mean, rstd, mul, sums, gmean, gvar)
    coefficients = jnp.stack([mul, shift, alpha, beta, mean])
    dx, dw = conv.pointwise_bn_grads(x, w, gz, y, coefficients, CLIPPED_ACTS[act])
    return dx, dw, dscale, sums[0], dkernel


expand_normalize_act_depthwise_train.defvjp(_expand_dw_fwd, _expand_dw_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def normalize_max_pool_train(x, scale, bias, eps, window, stride, pads):
    """``(max_pool(y), mean, var)`` with ``(y, mean, var) = normalize_train(x, scale, bias,
    eps)`` and the native max pool (``pads`` explicit), without ``y`` ever written: the pool
    kernel reads ``x`` and normalises each tap (`pool.affine_max_pool`). In the backward pass
    BatchNorm's two sums are taken over the pooled map (the pool's input gradient is the output
    gradient at each window's winner) and BatchNorm's backward is applied as the pool's input
    gradient is written (`pool.affine_max_pool_grad`): two passes over full-size maps fewer each
    way. Equal to the unfused form up to float rounding (tested)."""
    return _normalize_pool_fwd(x, scale, bias, eps, window, stride, pads)[0]


def _normalize_pool_fwd(x, scale, bias, eps, window, stride, pads):
    mean, var, rstd, mul, shift = _statistics(x, scale, bias, eps)
    z, winner, picked = pool.affine_max_pool(x, mul, shift, window, stride, pads)
    return (z, mean, var), (x, winner, picked, mean, rstd, mul)


def _normalize_pool_bwd(eps, window, stride, pads, res, cts):
    x, winner, picked, mean, rstd, mul = res
    gz, gmean, gvar = cts
    # sum(gy) and sum(gy * x) over the pool's input gradient gy: nonzero only at the winners.
    sums = _dots(gz, picked)
    dscale, alpha, beta = _coefficients(x, mean, rstd, mul, sums, gmean, gvar)
    dx = pool.affine_max_pool_grad(gz, winner, x, mul, alpha, beta, mean, window, stride, pads)
    return dx, dscale, sums[0]


normalize_max_pool_train.defvjp(_normalize_pool_fwd, _normalize_pool_bwd)
