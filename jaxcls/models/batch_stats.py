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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcls import native
from jaxcls.models import conv, pool

# BatchNorm's sums run as the native kernels on CPU (see the module docstring).
NATIVE_BATCH_STATS = True
# ... and a BatchNorm followed by a native max pool in training runs its apply inside the pool
# (`normalize_max_pool_train`; tools/bench_ab.py --variant=bn_pool_unfused turns it off).
NATIVE_POOLED = True


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


def _sums_call(target: str, *args):
    c = args[0].shape[-1]
    out = (jax.ShapeDtypeStruct((c,), jnp.float32),) * 2
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(*args)


def _summed_over_batch(target: str, n_args: int, rule: str):
    """The native sums ``target`` as a ``custom_partitioning``: over a batch sharded across
    devices each device sums its images and the two results are added over the devices."""
    fn = functools.partial(_sums_call, target)
    wrapped = custom_partitioning(fn)

    def infer(mesh, arg_shapes, result_shape):
        return (NamedSharding(mesh, P()),) * 2

    def partition(mesh, arg_shapes, result_shape):
        axis = conv.batch_axis(arg_shapes[0].sharding)
        args = (NamedSharding(mesh, P(axis)),) * n_args

        def lower(*a):
            sums = fn(*a)
            return jax.lax.psum(sums, axis) if axis is not None else sums

        return mesh, lower, (NamedSharding(mesh, P()),) * 2, args

    wrapped.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule)
    return wrapped


_moments = _summed_over_batch("jaxcls_channel_moments", 1, "b h w c -> c, c")
_dots = _summed_over_batch("jaxcls_channel_dots", 2, "b h w c, b h w c -> c, c")


def _statistics(x, eps):
    total, squares = _moments(x)
    n = x.size // x.shape[-1]
    mean = total / n
    var = jnp.maximum(squares / n - jnp.square(mean), 0.0)
    return mean, var, jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_train(x, scale, bias, eps):
    """``(y, mean, var)``: ``x`` [B, H, W, C] normalised with its batch statistics, scaled and
    shifted (``scale``, ``bias``: [C]), and those statistics (the biased variance)."""
    return _normalize_fwd(x, scale, bias, eps)[0]


def _normalize_fwd(x, scale, bias, eps):
    mean, var, rstd = _statistics(x, eps)
    mul = scale * rstd
    y = x * mul + (bias - mean * mul)
    return (y, mean, var), (x, mean, rstd, mul)


def _normalize_bwd(eps, res, cts):
    x, mean, rstd, mul = res
    gy, gmean, gvar = cts
    n = x.size // x.shape[-1]
    total, dot = _dots(gy, x)
    # sum over the batch of gy * (x - mean) * rstd, from the two sums of one pass.
    dscale = (dot - mean * total) * rstd
    centred = x - mean
    dx = mul * (gy - total / n - centred * (rstd * dscale / n))
    # The statistics' own cotangents (zero when they only update running averages).
    dx = dx + gmean / n + centred * (2.0 * gvar / n)
    return dx, dscale, total


normalize_train.defvjp(_normalize_fwd, _normalize_bwd)


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
    mean, var, rstd = _statistics(x, eps)
    mul = scale * rstd
    z, winner, picked = pool.affine_max_pool(x, mul, bias - mean * mul, window, stride, pads)
    return (z, mean, var), (x, winner, picked, mean, rstd, mul)


def _normalize_pool_bwd(eps, window, stride, pads, res, cts):
    x, winner, picked, mean, rstd, mul = res
    gz, gmean, gvar = cts
    n = x.size // x.shape[-1]
    # sum(gy) and sum(gy * x) over the pool's input gradient gy: nonzero only at the winners.
    total, dot = _dots(gz, picked)
    dscale = (dot - mean * total) * rstd
    # _normalize_bwd's dx for that gy, as mul * gy + alpha + beta * (x - mean).
    alpha = gmean / n - mul * (total / n)
    beta = 2.0 * gvar / n - mul * (rstd * dscale / n)
    dx = pool.affine_max_pool_grad(gz, winner, x, mul, alpha, beta, mean, window, stride, pads)
    return dx, dscale, total


normalize_max_pool_train.defvjp(_normalize_pool_fwd, _normalize_pool_bwd)
