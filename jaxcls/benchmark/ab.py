"""A/B benchmark of the real train step: a reference formulation vs the current code, interleaved
(the library half of ``tools/bench_ab.py``).

Both train steps (`train_step.train_setup`, one device unless told otherwise) are compiled in
one process and timed alternately (A, B, A, B, ...; one step each), so that drifting machine load
hits both; the report is the median time of each and their ratio. Variant A is the current code
with one piece swapped back to a reference formulation while its step is traced
(`variant_context`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from unittest import mock

import numpy as np

from jaxcls.benchmark import common, train_step


def variant_context(name: str):
    """The context in which variant A is traced."""
    from jaxcls.models import conv, depthwise, pool

    if name == "depthwise_shifted":
        return depthwise.set_depthwise_impl("shifted")
    if name == "depthwise_autodiff":
        stack = contextlib.ExitStack()
        stack.enter_context(depthwise.set_depthwise_impl("shifted"))
        stack.enter_context(mock.patch.object(depthwise, "_shifted", depthwise._shifted_sum))
        return stack
    if name == "depthwise_grouped":
        return depthwise.set_depthwise_impl("grouped")
    if name == "conv_xla":
        return conv.set_conv_impl("xla")
    if name == "conv_all_taps":  # patches GEMMs over every tap, padding-only ones included
        return mock.patch.object(
            conv, "live_taps", lambda _, kernel_hw, *a: list(np.ndindex(*kernel_hw))
        )
    if name == "stem_conv_xla":  # XLA's convolution for 1-4 input channels, not the native one
        return mock.patch.object(conv, "NATIVE_MAX_IN_CHANNELS", 0)
    if name == "dense_conv_xla":  # XLA's 3x3 convolutions (and taps/patches) for more channels
        return mock.patch.object(conv, "NATIVE_MAX_CHANNELS", 0)
    if name == "direct_conv":  # the native 3x3 stride-1 kernels directly, not as Winograd's
        return mock.patch.object(conv, "NATIVE_WINOGRAD", False)
    if name == "winograd_wgrad_narrow":  # Winograd's weight gradient at any input channel count
        return mock.patch.object(conv, "WINOGRAD_WGRAD_MIN_CHANNELS", 0)
    if name == "pointwise_wgrad_taps":  # 1x1 stride-1 weight gradients as XLA's einsum
        stack = contextlib.ExitStack()
        stack.enter_context(mock.patch.object(conv, "NATIVE_POINTWISE_WGRAD", False))
        stack.enter_context(mock.patch.object(conv, "NATIVE_POINTWISE_BWD", False))
        return stack
    if name == "pointwise_bwd_split":  # a 1x1's gradients as the wgrad kernel + XLA's GEMM again
        return mock.patch.object(conv, "NATIVE_POINTWISE_BWD", False)
    if name == "strided_conv_xla":  # XLA's 3x3 and the 1x1 taps for stride-2 convolutions
        return mock.patch.object(conv, "NATIVE_STRIDE2", False)
    if name == "strided_input_grad_xla":  # XLA's transposed conv for a native strided conv's dx
        return mock.patch.object(conv, "NATIVE_STRIDED_INPUT_GRAD", False)
    if name == "batch_stats_xla":  # BatchNorm's sums as XLA's reductions, not the native ones
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_BATCH_STATS", False)
    if name == "bn_pool_unfused":  # BatchNorm's apply before the native max pool, not inside it
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_POOLED", False)
    if name == "bn_act_unfused":  # the ReLU's gradient outside BatchNorm's backward, not inside
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_ACT", False)
    if name == "bn_dw_unfused":  # BatchNorm + ReLU/ReLU6 written before the depthwise conv again
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_DEPTHWISE", False)
    if name == "dw_moments_separate":  # BatchNorm sums a depthwise output in its own pass
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_DW_MOMENTS", False)
    if name == "bn_expand_unfused":  # an expansion's BatchNorm input gradient written again
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_EXPAND", False)
    if name == "densenet_moments_unshared":  # each DenseNet BatchNorm sums its whole input
        from jaxcls.models import densenet

        return mock.patch.object(densenet, "SHARED_MOMENTS", False)
    if name == "image_sums_reduce":  # per-image weight gradients added by a reduction again
        return mock.patch.object(conv, "SUM_IMAGES_AS_DOT", False)
    if name == "se_grad_xla":  # a squeeze-excite's gate gradient as XLA's reduction again
        from jaxcls.models import batch_stats

        return mock.patch.object(batch_stats, "NATIVE_RESCALE", False)
    if name == "max_pool_xla":
        return pool.set_max_pool_impl("xla")
    if name == "max_pool_taps":  # the pure-JAX custom gradient instead of the native kernels
        return pool.set_max_pool_impl("taps")
    if name == "conv_ynnpack":
        return conv.set_cpu_conv_library("ynnpack")
    if name == "act_before_pool":  # ReLU then max pool (ResNet's/DenseNet's stem, CNNs), as written
        from jaxcls.models import layers

        return mock.patch.object(layers, "ACT_AFTER_POOL", False)
    if name == "skip_select":
        from jaxcls.trainer import steps

        return steps.set_skip_impl("select")
    if name == "silu_autodiff":  # jax.nn.silu's own gradient, which keeps the sigmoid
        from jaxcls.models import layers

        return layers.autodiff_silu()
    if name == "inception_pad_first":  # Inception's explicit padding as a jnp.pad before the conv
        from jaxcls.models import inception

        return mock.patch.object(inception, "PAD_IN_CONV", False)
    if name == "pool_conv_as_written":  # DenseNet's transitions, Inception's pool branches
        from jaxcls.models import layers

        return mock.patch.object(layers, "POOL_CONV_CHEAPER_ORDER", False)
    if name == "all_cpu_devices":
        return contextlib.nullcontext()  # the same program; A's mesh differs (`_compile_both`)
    raise ValueError(f"unknown variant {name!r}")


VARIANTS = (
    "depthwise_shifted",
    "depthwise_autodiff",
    "depthwise_grouped",
    "conv_xla",
    "conv_all_taps",
    "stem_conv_xla",
    "dense_conv_xla",
    "direct_conv",
    "winograd_wgrad_narrow",
    "pointwise_wgrad_taps",
    "pointwise_bwd_split",
    "strided_conv_xla",
    "strided_input_grad_xla",
    "batch_stats_xla",
    "bn_pool_unfused",
    "bn_act_unfused",
    "bn_dw_unfused",
    "dw_moments_separate",
    "bn_expand_unfused",
    "densenet_moments_unshared",
    "image_sums_reduce",
    "se_grad_xla",
    "conv_ynnpack",
    "max_pool_xla",
    "max_pool_taps",
    "act_before_pool",
    "skip_select",
    "silu_autodiff",
    "pool_conv_as_written",
    "inception_pad_first",
    "all_cpu_devices",
)


def _compile_both(name: str, variant: str, batch: int, size: int, devices: int = 1):
    """``(steps, states, batches, first-step seconds)`` of A and B (dicts by side), each traced
    and run once."""
    import jax

    # B trains on ``devices`` devices (0: all); A too, except for 'all_cpu_devices':
    # data-parallel over all of them, against one for B.
    setups = {"B": train_step.train_setup(name, batch, size, devices=devices)}
    setups["A"] = (
        train_step.train_setup(name, batch, size, devices=0)
        if variant == "all_cpu_devices"
        else setups["B"]
    )
    steps, states, data, compile_s = {}, {}, {}, {}
    for key in ("A", "B"):
        params, rest, tx, make_steps, data[key] = setups[key]
        # In effect while the steps are made (compile options) and first called (traced and
        # compiled then).
        with variant_context(variant) if key == "A" else contextlib.nullcontext():
            steps[key] = make_steps()
            # Own copies: each step donates its state, and A's and B's must not share buffers.
            states[key] = train_step.initial_state(steps[key], params, rest, tx)
            t0 = time.perf_counter()
            states[key], m = steps[key].train(states[key], data[key])
            jax.block_until_ready(m)
        compile_s[key] = time.perf_counter() - t0
    return steps, states, data, compile_s


def ab_train_step(
    name: str, variant: str, batch: int, size: int, rounds: int, devices: int = 1
) -> dict:
    """Median seconds per train step of A (reference) and B (current), timed alternately, on
    ``devices`` devices (0: all)."""
    import jax

    steps, states, data, compile_s = _compile_both(name, variant, batch, size, devices)
    losses = {k: None for k in steps}
    times = {"A": [], "B": []}
    steal = {k: common.StealMeter() for k in times}
    for _ in range(rounds):
        for key in ("A", "B"):
            with steal[key]:
                t0 = time.perf_counter()
                states[key], m = steps[key].train(states[key], data[key])
                jax.block_until_ready(m)
                times[key].append(time.perf_counter() - t0)
            losses[key] = float(m["loss"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "A_s": med["A"],
        "B_s": med["B"],
        "A_img_s": batch / med["A"],
        "B_img_s": batch / med["B"],
        "speedup": med["A"] / med["B"],
        "first_step_s": compile_s,
        "times": times,
        "loss_A": losses["A"],
        "loss_B": losses["B"],
        "steal_pct": {k: meter.percent for k, meter in steal.items()},
    }


def run(
    models: list[str],
    *,
    variant: str = "depthwise_autodiff",
    batch=32,
    size=224,
    rounds=5,
    devices: int = 1,
) -> int:
    """`ab_train_step` for every model, printing the medians and every step's time; returns 0."""
    for name in models:
        r = ab_train_step(name, variant, batch, size, rounds, devices)
        b_is = "one device" if variant == "all_cpu_devices" else "current"
        print(
            f"{name} batch {batch} {size}px, A={variant} vs B={b_is}: "
            f"A {r['A_s'] * 1e3:.1f} ms/step ({r['A_img_s']:.2f} img/s), "
            f"B {r['B_s'] * 1e3:.1f} ms/step ({r['B_img_s']:.2f} img/s), B is {r['speedup']:.2f}x "
            f"(medians of {rounds} alternating steps; first step A "
            f"{r['first_step_s']['A']:.0f} s, B {r['first_step_s']['B']:.0f} s; "
            f"losses {r['loss_A']:.4f} / {r['loss_B']:.4f})",
            flush=True,
        )
        steal = r["steal_pct"]
        if None not in steal.values():
            print(
                f"  CPU steal (what the host took while each side ran): A {steal['A']:.0f}%, "
                f"B {steal['B']:.0f}%"
            )
        # Milliseconds: a small model's step takes a few of them.
        print("  A times (ms):", " ".join(f"{t * 1e3:.1f}" for t in r["times"]["A"]))
        print("  B times (ms):", " ".join(f"{t * 1e3:.1f}" for t in r["times"]["B"]))
    return 0
