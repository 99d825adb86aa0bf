"""Per-op benchmark: depthwise convolution forward + backward at EfficientNet-B0's shapes (the
library half of ``tools/bench_ops.py``).

For each depthwise layer shape of EfficientNet-B0 at 224 px it times one jitted call returning the
output and both gradients, for A (the pure-JAX shifted form of models/depthwise.py) and B (the
native C++ kernels of jaxcls/native) alternately, after checking that they agree (relative 1e-5);
optionally also ``nn.Conv2d(groups=C)`` in a torch interpreter (`TORCH_SCRIPT`, no jaxcls). The
table has the best of the rounds per variant and the totals weighted by the layer counts.
"""

from __future__ import annotations

import json
import os

from jaxcls.benchmark import common

# (map size, channels, kernel, stride, number of such layers in EfficientNet-B0)
B0_DEPTHWISE = [
    (112, 32, 3, 1, 1),
    (112, 96, 3, 2, 1),
    (56, 144, 3, 1, 1),
    (56, 144, 5, 2, 1),
    (28, 240, 5, 1, 1),
    (28, 240, 3, 2, 1),
    (14, 480, 3, 1, 2),
    (14, 480, 5, 1, 1),
    (14, 672, 5, 1, 2),
    (14, 672, 5, 2, 1),
    (7, 1152, 5, 1, 3),
    (7, 1152, 3, 1, 1),
]

TORCH_SCRIPT = r"""
import json, sys, time, torch
shapes, batch, rounds = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))
out = []
for hw, c, k, s, _ in shapes:
    conv = torch.nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False)
    x = torch.randn(batch, c, hw, hw).to(memory_format=torch.channels_last).requires_grad_()
    ct = torch.randn_like(conv(x))
    def run():
        x.grad = None; conv.weight.grad = None
        conv(x).backward(ct)
    run()
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter(); run(); ts.append(time.perf_counter() - t0)
    out.append(min(ts))
print(json.dumps({"times": out, "version": f"torch {torch.__version__}"}))
"""


def _vjp_fn(f, stride, pads):
    """A jitted ``(x, k, ct) -> (f(x, k), (dx, dk))``."""
    import jax

    def run(x, k, ct):
        y, vjp = jax.vjp(lambda x, k: f(x, k, stride, pads), x, k)
        return y, vjp(ct)

    return jax.jit(run)


def _bench_shape(batch: int, rounds: int, hw: int, c: int, k: int, s: int) -> tuple[float, float]:
    """Best seconds of A and B at one shape, after checking that they agree."""
    import jax
    import jax.numpy as jnp

    from jaxcls.models import depthwise
    from jaxcls.models.conv import get_padding

    pads = (get_padding("symmetric", hw, k, s),) * 2
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (batch, hw, hw, c))
    w = jax.random.normal(kk, (k, k, 1, c))
    ho = (hw + sum(pads[0]) - k) // s + 1
    ct = jax.random.normal(kc, (batch, ho, ho, c))
    fa = _vjp_fn(depthwise._shifted, s, pads)
    fb = _vjp_fn(depthwise._native, s, pads)
    for a, b in zip(jax.tree.leaves(fa(x, w, ct)), jax.tree.leaves(fb(x, w, ct))):
        err = float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
        if err > 1e-5:
            raise AssertionError(f"{hw}x{hw}x{c} k{k} s{s}: A and B differ by {err:.1e}")
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(common.seconds_once(fa, x, w, ct))
        tb.append(common.seconds_once(fb, x, w, ct))
    return min(ta), min(tb)


def bench_jax(batch: int, rounds: int) -> list[tuple[float, float]]:
    """``(A seconds, B seconds)`` per shape of `B0_DEPTHWISE`, printing a line for each."""
    results = []
    for hw, c, k, s, _ in B0_DEPTHWISE:
        ta, tb = _bench_shape(batch, rounds, hw, c, k, s)
        results.append((ta, tb))
        print(f"{hw}x{hw}x{c} k{k} s{s}: A {ta * 1e3:.1f} ms, B {tb * 1e3:.1f} ms", flush=True)
    return results


def bench_torch(python: str, batch: int, rounds: int) -> tuple[list[float] | None, str]:
    """torch's best seconds per shape and its version, or ``(None, why not)``."""
    out, err = common.run_reference(
        python, TORCH_SCRIPT, json.dumps(B0_DEPTHWISE), batch, rounds, os.cpu_count()
    )
    return (out["times"], out["version"]) if out else (None, err)


def table_lines(ours, torch_times, note: str, batch: int, rounds: int) -> list[str]:
    """The Markdown table: one row per shape, then the totals weighted by the layer counts."""
    lines = [
        f"Depthwise conv forward + both gradients, EfficientNet-B0 shapes, batch {batch}, "
        f"best of {rounds}; A = pure-JAX shifted form, B = native kernels; torch: {note}",
        "",
        "| map | C | k | s | layers | A ms | B ms | A/B | torch ms | torch/B |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot = [0.0, 0.0, 0.0]
    for i, ((hw, c, k, s, n), (ta, tb)) in enumerate(zip(B0_DEPTHWISE, ours)):
        tt = torch_times[i] if torch_times else None
        tot[0] += n * ta
        tot[1] += n * tb
        tot[2] += n * (tt or 0.0)
        t_cols = f"{tt * 1e3:.1f} | {tt / tb:.2f}" if tt else "- | -"
        lines.append(
            f"| {hw}x{hw} | {c} | {k} | {s} | {n} | {ta * 1e3:.1f} | {tb * 1e3:.1f} | "
            f"{ta / tb:.2f} | {t_cols} |"
        )
    t_tot = f"{tot[2]:.2f} s | {tot[2] / tot[1]:.2f}" if torch_times else "- | -"
    lines.append(
        f"| **model total** | | | | | {tot[0]:.2f} s | {tot[1]:.2f} s | {tot[0] / tot[1]:.2f} | "
        f"{t_tot} |"
    )
    return lines


def run(
    *, batch: int = 32, rounds: int = 3, torch_python: str = "", out: str = "bench_ops.md"
) -> int:
    """Times A and B (and torch with ``torch_python``), prints the table and writes it to
    ``out``; returns 0."""
    ours = bench_jax(batch, rounds)
    torch_times, note = None, "not run (no --torch_python)"
    if torch_python:
        torch_times, note = bench_torch(torch_python, batch, rounds)
    common.write_table(table_lines(ours, torch_times, note, batch, rounds), out)
    return 0
