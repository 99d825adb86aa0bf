"""The native CPU kernels against XLA's own form, one op at a time, at ResNet's 224 px shapes
(``tools/bench_ops.py --op=kernels``).

Each row times two jitted functions alternately in one process (A, B, A, B, ...) after checking
that they agree (relative 1e-4): A is what XLA:CPU runs without the kernel (its convolution, its
transposed convolution, its reductions; compiled with the trainer's options, dense convolutions on
Eigen; for a 1x1 weight gradient the 'taps' einsum; for both gradients of a 1x1 with few input
channels the weight-gradient kernel and XLA's GEMM; for BatchNorm + ReLU6 + a depthwise
convolution the activation written and the native depthwise kernels, then the next BatchNorm's
sums of the output; for a depthwise convolution and its output's moments the plain kernel and the
moments kernel), B the native kernel the zoo runs on CPU.
Reported: the median of ``rounds`` calls each, the speed-up and B's rate (GFLOP/s for
convolutions, counting the direct form's multiply-adds also where B is Winograd's F(2x2, 3x3),
which does fewer; GB/s read for the BatchNorm sums; GB/s of the input for BatchNorm + ReLU6 +
depthwise and for depthwise + moments). The 3x3 stride-1 shapes where the native kernels run as Winograd's
get two more rows, the direct kernels against XLA's. Run it with the trainer's malloc settings
(``reuse_memory``: the tool sets them up as the trainer does) so that fresh output buffers are not
page-faulted in on every call.
"""

from __future__ import annotations

import itertools
import statistics

from jaxcls.benchmark import common

# (input map, input channels, output channels) of ResNet-18's 3x3 stride-1 convolutions at 224 px.
DENSE = ((56, 64, 64), (28, 128, 128), (14, 256, 256), (7, 512, 512))
# (input map, input channels, output channels, kernel) of its stride-2 convolutions.
STRIDED = ((56, 64, 128, 3), (28, 128, 256, 3), (14, 256, 512, 3), (56, 64, 128, 1))
# (map, input channels, output channels) of ResNet-50's 1x1 stride-1 convolutions whose weight
# gradient is the native kernel's (conv.pointwise_wgrad_fits; A: the 'taps' einsum).
POINTWISE = ((56, 256, 64), (56, 64, 256), (28, 128, 512), (14, 1024, 256))
# (map, input channels, output channels) of MobileNetV2's and EfficientNet-B0's 1x1 stride-1
# convolutions whose two gradients come from one native kernel (conv.pointwise_bwd_fits; A: the
# weight-gradient kernel or einsum as conv.pointwise_wgrad_fits picks, and XLA's GEMM for the
# input gradient).
POINTWISE_BWD = ((112, 16, 96), (112, 32, 16), (56, 24, 144), (28, 40, 240))
# (map, channels, stride) of MobileNetV2's expanded maps at 224 px whose BatchNorm and ReLU6 feed a
# 3x3 depthwise convolution, run with the activation inside the depthwise kernels
# (batch_stats.normalize_act_depthwise_train; A: the activation written, then the native depthwise
# kernels, BatchNorm's backward sums in a pass of their own).
BN_DEPTHWISE = ((112, 96, 2), (56, 144, 1), (28, 192, 1), (14, 576, 1))
# (map, input channels, expanded channels, depthwise stride) of MobileNetV2's 1x1 expansions at
# 224 px whose both-gradients kernel builds the BatchNorm + ReLU6's input gradient after them
# (batch_stats.expand_normalize_act_depthwise_train; A: the same with that gradient written by XLA
# and read by the kernel, batch_stats.normalize_act_depthwise_train).
EXPAND = ((112, 16, 96, 2), (56, 24, 144, 1), (28, 32, 192, 1))
# (input map, channels, stride) of MobileNetV2's 3x3 depthwise convolutions at 224 px whose forward
# kernel also sums its output for the BatchNorm after it (depthwise.depthwise_conv_moments; A: the
# plain forward kernel, then the native moments kernel over its output).
DW_MOMENTS = ((112, 32, 1), (112, 96, 2), (56, 144, 1), (14, 576, 1))
# The stem: (input map, input channels, output channels); 7x7, stride 2, padding 3.
STEM = (224, 3, 64)
# BatchNorm inputs: (map, channels).
NORMS = ((112, 64), (56, 64), (28, 128), (14, 256), (7, 512))
# The stem's max pool (3x3, stride 2, padding 1): its input (map, channels).
POOL = (112, 64)


def _cases(batch: int):
    """``(name, A, B, args, work, unit)``: work in GFLOP or GB per call."""
    import jax
    import jax.numpy as jnp

    from jaxcls.models import batch_stats, depthwise, pool
    from jaxcls.models import conv as C

    draws = itertools.count()

    def normal(*shape):  # a new key for each array, however many the cases take
        return jax.random.normal(jax.random.fold_in(jax.random.key(0), next(draws)), shape)

    def xla_wgrad(stride, pads, w_shape):
        return lambda x, g: jax.vjp(lambda w: C._xla_conv(x, w, stride, pads), jnp.zeros(w_shape))[
            1
        ](g)[0]

    out = []

    def add(name, xla, native, args, work, unit):
        out.append((name, xla, native, args, work, unit))

    def add_conv(name, stride, pads, operands, flop, native_fwd, native_wgrad):
        """The forward pass and the weight gradient of one convolution, XLA's against native."""
        x, w, g = operands
        add(
            f"{name} forward",
            lambda x, w: C._xla_conv(x, w, stride, pads),
            lambda x, w: native_fwd(x, w, stride, pads),
            (x, w),
            flop,
            "GFLOP",
        )
        add(
            f"{name} weight gradient",
            xla_wgrad(stride, pads, w.shape),
            lambda x, g: native_wgrad(x, w, g, stride, pads),
            (x, g),
            flop,
            "GFLOP",
        )

    dense_wgrad = C._dense_wgrad_call

    def stem_wgrad(x, w, g, stride, pads):  # per image: summed as XLA's is
        return jnp.sum(C._stem_wgrad_call(x, w, g, stride, pads), 0)

    same = ((1, 1), (1, 1))
    for hw, c, o in DENSE:
        x, w, g = normal(batch, hw, hw, c), normal(3, 3, c, o) * 0.05, normal(batch, hw, hw, o)
        flop = 2 * 9 * c * o * hw * hw * batch / 1e9
        name = f"3x3 {hw}x{hw} {c}->{o}"
        add_conv(name, 1, same, (x, w, g), flop, C._dense_fwd_call, dense_wgrad)
        if C.winograd_fits(batch, (hw, hw), w.shape, 1):  # the rows above ran Winograd's
            add_conv(
                f"{name} direct (not Winograd)",
                1,
                same,
                (x, w, g),
                flop,
                lambda *a: C.dense_fwd_kernel(*a, winograd=False),
                lambda *a: C.dense_wgrad_kernel(*a, winograd=False),
            )
    for hw, c, o, k in STRIDED:
        pads = ((k // 2, k // 2),) * 2
        ho = C.output_hw((hw, hw), (k, k), 2, pads)
        x, w, g = normal(batch, hw, hw, c), normal(k, k, c, o) * 0.05, normal(batch, *ho, o)
        flop = 2 * k * k * c * o * ho[0] * ho[1] * batch / 1e9
        add(
            f"{k}x{k} stride 2 {hw}x{hw} {c}->{o} forward",
            lambda x, w, pads=pads: C._xla_conv(x, w, 2, pads),
            lambda x, w, pads=pads: C._dense_fwd_call(x, w, 2, pads),
            (x, w),
            flop,
            "GFLOP",
        )
        add(
            f"{k}x{k} stride 2 {hw}x{hw} {c}->{o} input gradient",
            lambda w, g, x=x, pads=pads: C._xla_input_grad(x, w, g, 2, pads),
            lambda w, g, x=x, pads=pads: C._strided_input_grad(x, w, g, 2, pads),
            (w, g),
            flop,
            "GFLOP",
        )
    none = ((0, 0), (0, 0))
    for hw, c, o in POINTWISE:
        x, g, w = normal(batch, hw, hw, c), normal(batch, hw, hw, o), jnp.zeros((1, 1, c, o))
        add(
            f"1x1 {hw}x{hw} {c}->{o} weight gradient",
            lambda x, g, w=w: C.weight_grad_taps(x, g, w.shape, 1, none),
            lambda x, g, w=w: C._dense_wgrad_call(x, w, g, 1, none),
            (x, g),
            2 * c * o * hw * hw * batch / 1e9,
            "GFLOP",
        )
    for hw, c, o in POINTWISE_BWD:
        x, g, w = normal(batch, hw, hw, c), normal(batch, hw, hw, o), normal(1, 1, c, o)
        split = "wgrad" if C.pointwise_wgrad_fits(batch, (hw, hw), w.shape, 1, none) else None
        add(
            f"1x1 {hw}x{hw} {c}->{o} both gradients",
            lambda x, w, g, split=split: C._conv_taps_bwd(1, none, split, (x, w), g),
            lambda x, w, g: C._conv_taps_bwd(1, none, "both", (x, w), g),
            (x, w, g),
            2 * 2 * c * o * hw * hw * batch / 1e9,
            "GFLOP",
        )

    def gradients(op):
        """``op(*args)[0]``'s vjp of ``g`` (``run(*args, g)``): the gradients of every argument
        (forward pass included), and the op's other outputs (the statistics, the next
        BatchNorm's sums), so that neither side's compiler drops work the other side's kernel
        cannot skip."""

        def run(*args):
            def split(*a):
                out = op(*a)
                return out[0], out[1:]

            _, vjp, rest = jax.vjp(split, *args[:-1], has_aux=True)
            return vjp(args[-1]), rest

        return run

    for hw, c, stride in BN_DEPTHWISE:
        x, scale, bias = normal(batch, hw, hw, c), 1.0 + 0.1 * normal(c), 0.5 + normal(c)
        k = normal(3, 3, 1, c) * 0.1
        pads = depthwise.conv_pads(x.shape, k.shape, stride, "symmetric")
        g = normal(batch, *C.output_hw((hw, hw), (3, 3), stride, pads), c)

        def unfused(x, scale, bias, k, stride=stride):
            z, mean, var = batch_stats.normalize_act_train(x, scale, bias, 1e-5, "relu6")
            y = depthwise.depthwise_conv(z, k, stride, "symmetric", "native")
            # the next BatchNorm's sums of y, which the fused forward kernel takes as it writes
            return y, mean, var, jnp.stack(batch_stats.channel_moments(y))

        def fused(x, scale, bias, k, stride=stride, pads=pads):
            op = batch_stats.normalize_act_depthwise_train
            return op(x, scale, bias, 1e-5, "relu6", k, stride, pads)

        name = f"BatchNorm + ReLU6 + depthwise 3x3 stride {stride} {hw}x{hw}x{c}"
        for what, a, b, args in (
            ("forward", unfused, fused, (x, scale, bias, k)),
            ("forward and gradients", gradients(unfused), gradients(fused), (x, scale, bias, k, g)),
        ):
            add(f"{name} {what}", a, b, args, x.size * 4 / 1e9, "GB")
    for hw, c, o, stride in EXPAND:
        x, w = normal(batch, hw, hw, c), normal(1, 1, c, o) * 0.3
        scale, bias, k = 1.0 + 0.1 * normal(o), 0.5 + normal(o), normal(3, 3, 1, o) * 0.1
        pads = depthwise.conv_pads(x.shape, k.shape, stride, "symmetric")
        g = normal(batch, *C.output_hw((hw, hw), (3, 3), stride, pads), o)

        def written(x, w, scale, bias, k, stride=stride, pads=pads):
            op = batch_stats.normalize_act_depthwise_train
            return op(C.conv2d(x, w), scale, bias, 1e-5, "relu6", k, stride, pads)

        def built(x, w, scale, bias, k, stride=stride, pads=pads):
            op = batch_stats.expand_normalize_act_depthwise_train
            return op(x, w, scale, bias, 1e-5, "relu6", k, stride, pads)

        add(
            f"1x1 {hw}x{hw} {c}->{o} + BatchNorm + ReLU6 + depthwise 3x3 stride {stride}"
            " forward and gradients",
            gradients(written),
            gradients(built),
            (x, w, scale, bias, k, g),
            batch * hw * hw * o * 4 / 1e9,
            "GB",
        )
    for hw, c, stride in DW_MOMENTS:
        x, k = normal(batch, hw, hw, c), normal(3, 3, 1, c) * 0.1

        def separate(x, k, stride=stride):
            y = depthwise.depthwise_conv(x, k, stride, "symmetric", "native")
            return y, jnp.stack(batch_stats.channel_moments(y))

        def summed(x, k, stride=stride):
            return depthwise.depthwise_conv_moments(x, k, stride, "symmetric", "native")

        name = f"depthwise 3x3 stride {stride} {hw}x{hw}x{c} forward and its output's moments"
        add(name, separate, summed, (x, k), x.size * 4 / 1e9, "GB")
    stem = ((3, 3), (3, 3))
    hw, c, o = STEM
    ho = C.output_hw((hw, hw), (7, 7), 2, stem)
    x, w, g = normal(batch, hw, hw, c), normal(7, 7, c, o) * 0.1, normal(batch, *ho, o)
    flop = 2 * 49 * c * o * ho[0] * ho[1] * batch / 1e9
    name = f"stem 7x7 stride 2 {hw}x{hw} {c}->{o}"
    add_conv(name, 2, stem, (x, w, g), flop, C._stem_fwd_call, stem_wgrad)
    axes = (0, 1, 2)
    for hw, c in NORMS:
        x, g = normal(batch, hw, hw, c), normal(batch, hw, hw, c)
        gb = x.size * 4 / 1e9
        add(
            f"BatchNorm {hw}x{hw}x{c} sums of x, x^2",
            lambda x: (jnp.sum(x, axes), jnp.sum(jnp.square(x), axes)),
            lambda x: batch_stats._moments(x),
            (x,),
            gb,
            "GB",
        )
        add(
            f"BatchNorm {hw}x{hw}x{c} sums of g, g*x",
            lambda g, x: (jnp.sum(g, axes), jnp.sum(g * x, axes)),
            lambda g, x: batch_stats._dots(g, x),
            (g, x),
            2 * gb,
            "GB",
        )
    hw, c = POOL
    pads = ((1, 1), (1, 1))

    def taps_fwd(x):  # the 'taps' form's output and winners
        y, (winner, _) = pool._max_pool_taps_fwd(x, 3, 2, pads)
        return y, winner

    x = normal(batch, hw, hw, c)
    y, winner = taps_fwd(x)
    g = normal(*y.shape)
    gb = (x.size * 4 + y.size * 5) / 1e9  # the map (float32); the output and winners (int8)
    name = f"max pool 3x3 stride 2 {hw}x{hw}x{c}"
    add(
        f"{name} forward and winners",
        taps_fwd,
        lambda x: pool._native_fwd(x, (3, 2), pads),
        (x,),
        gb,
        "GB",
    )
    add(
        f"{name} input gradient",
        lambda g, w: pool._max_pool_taps_bwd(3, 2, pads, (w, x.shape), g)[0],
        lambda g, w: pool._native_bwd(g, w, (3, 2, hw, hw), pads),
        (g, winner),
        gb,
        "GB",
    )
    return out


def bench(batch: int, rounds: int) -> list[dict]:
    """One row per case of `_cases`, printing each."""
    import jax
    import jax.numpy as jnp

    from jaxcls import native
    from jaxcls.models.conv import compiler_options

    if not native.available():
        raise RuntimeError(f"the native kernels are unavailable: {native.unavailable_reason()}")
    rows = []
    options = compiler_options()  # the trainer's: XLA's dense convolutions on Eigen
    cases = _cases(batch)
    for n, (name, a, b, args, work, unit) in enumerate(cases, 1):
        fa, fb = jax.jit(a, compiler_options=options), jax.jit(b, compiler_options=options)
        ref = jax.tree.leaves(fa(*args))  # (compiles both before the timing)
        for r, got in zip(ref, jax.tree.leaves(fb(*args)), strict=True):
            err = float(jnp.max(jnp.abs(r - got)) / (jnp.max(jnp.abs(r)) + 1e-30))
            if err > 1e-4:
                raise AssertionError(f"{name}: XLA and native differ by {err:.1e}")
        ta, tb = [], []
        for _ in range(rounds):
            ta.append(common.seconds_once(fa, *args))
            tb.append(common.seconds_once(fb, *args))
        row = dict(
            name=name, a=statistics.median(ta), b=statistics.median(tb), work=work, unit=unit
        )
        rows.append(row)
        print(
            f"[{n}/{len(cases)}] {name}: XLA {row['a'] * 1e3:.2f} ms, native "
            f"{row['b'] * 1e3:.2f} ms ({row['a'] / row['b']:.2f}x, "
            f"{work / row['b']:.0f} {unit}/s)",
            flush=True,
        )
    return rows


def table_lines(rows: list[dict], batch: int, rounds: int) -> list[str]:
    lines = [
        f"Native CPU kernels against XLA's form, batch {batch}, medians of {rounds} alternating "
        "calls (ms):",
        "",
        "| op | XLA | native | speed-up | native rate |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['a'] * 1e3:.2f} | {r['b'] * 1e3:.2f} | {r['a'] / r['b']:.2f}x | "
            f"{r['work'] / r['b']:.0f} {r['unit']}/s |"
        )
    return lines


def run(*, batch: int = 32, rounds: int = 7, out: str = "bench_kernels.md") -> int:
    common.prepare_process()
    rows = bench(batch, rounds)
    common.write_table(table_lines(rows, batch, rounds), out)
    return 0
