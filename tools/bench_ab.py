r"""A/B benchmark of the real train step: a reference formulation vs the current code, interleaved.

  python tools/bench_ab.py --models=efficientnet_b0 --variant=depthwise_autodiff \
      [--batch=32] [--size=224] [--rounds=5]

On a shared or noisy machine absolute images/sec drift from minute to minute, so both train steps
are compiled in one process and timed alternately (A, B, A, B, ...; one step each); the report is
the median time of each and their ratio. Variant A is the current code with one piece swapped back
to a reference formulation while the step is traced (``--variant``):

* ``depthwise_shifted``: the pure-JAX shifted form (with its custom backward) instead of the
  native depthwise kernels (jaxcls/native).
* ``depthwise_autodiff``: the pure-JAX shifted form with plain autodiff of its tap sum, i.e. the
  code before either.
* ``depthwise_grouped``: XLA's grouped convolution for depthwise layers.
* ``conv_xla``: XLA's own weight gradient for every dense convolution (no tap-wise einsums).

Variant B is the current code. The train step is the trainer's (steps.CompiledSteps: SGD with
momentum, cross-entropy, BatchNorm updates, donated state) on one device.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import benchutil  # noqa: E402


def variant_context(name: str):
    """The context in which variant A is traced."""
    from jaxcls.models import conv, depthwise

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
    raise ValueError(f"unknown variant {name!r}")


VARIANTS = ("depthwise_shifted", "depthwise_autodiff", "depthwise_grouped", "conv_xla")


def ab_train_step(name: str, variant: str, batch: int, size: int, rounds: int) -> dict:
    """Median seconds per train step of A (reference) and B (current), timed alternately."""
    import jax

    params, rest, tx, make_steps, b = benchutil.train_setup(name, batch, size)
    steps, states, compile_s = {}, {}, {}
    for key in ("A", "B"):
        steps[key] = make_steps()
        # Own copies: each step donates its state, and A's and B's must not share buffers.
        states[key] = benchutil.initial_state(steps[key], params, rest, tx)
        ctx = variant_context(variant) if key == "A" else contextlib.nullcontext()
        t0 = time.perf_counter()
        with ctx:  # traced (and compiled) on the first call
            states[key], m = steps[key].train(states[key], b)
            jax.block_until_ready(m)
        compile_s[key] = time.perf_counter() - t0
    losses = {k: None for k in steps}
    times = {"A": [], "B": []}
    for _ in range(rounds):
        for key in ("A", "B"):
            t0 = time.perf_counter()
            states[key], m = steps[key].train(states[key], b)
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
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="efficientnet_b0")
    p.add_argument("--variant", default="depthwise_autodiff", choices=VARIANTS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    for name in args.models.split(","):
        r = ab_train_step(name, args.variant, args.batch, args.size, args.rounds)
        print(
            f"{name} batch {args.batch} {args.size}px, A={args.variant} vs B=current: "
            f"A {r['A_s']:.2f} s/step ({r['A_img_s']:.2f} img/s), "
            f"B {r['B_s']:.2f} s/step ({r['B_img_s']:.2f} img/s), B is {r['speedup']:.2f}x "
            f"(medians of {args.rounds} alternating steps; first step A "
            f"{r['first_step_s']['A']:.0f} s, B {r['first_step_s']['B']:.0f} s; "
            f"losses {r['loss_A']:.4f} / {r['loss_B']:.4f})",
            flush=True,
        )
        print("  A times:", " ".join(f"{t:.2f}" for t in r["times"]["A"]))
        print("  B times:", " ".join(f"{t:.2f}" for t in r["times"]["B"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
