r"""Per-op benchmark: depthwise convolution forward + backward at EfficientNet-B0's shapes.

  python tools/bench_ops.py [--batch=32] [--rounds=3] [--torch_python=PY] [--out=bench_ops.md]

For each depthwise layer shape of EfficientNet-B0 at 224 px (input map, channels, kernel, stride;
``x N`` = how many layers of the model have it) it times one jitted call returning the output and
both gradients, for two implementations alternately in one process (A, B, A, B, ...):

* A ``shifted``: the pure-JAX form (tap sums with a custom VJP, models/depthwise.py), what CPU
  runs use where the native kernels cannot be built;
* B ``native``: the C++ kernels of jaxcls/native (XLA FFI custom calls), the CPU default.

Both are checked to agree (relative 1e-5) before timing. With ``--torch_python`` (an interpreter
with torch) it also times ``nn.Conv2d(groups=C)`` forward + backward, channels-last, at the same
shapes. Reported: the best of ``--rounds`` per variant (the least disturbed by other load) and the
totals weighted by the number of such layers in the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import benchutil  # noqa: E402

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


def bench_jax(batch: int, rounds: int) -> list[tuple[float, float]]:
    import jax
    import jax.numpy as jnp

    from jaxcls.models import depthwise
    from jaxcls.models.conv import get_padding

    def make(f, stride, pads):
        def run(x, k, ct):
            y, vjp = jax.vjp(lambda x, k: f(x, k, stride, pads), x, k)
            return y, vjp(ct)

        return jax.jit(run)

    def once(fn, *args):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - t0

    results = []
    for hw, c, k, s, _ in B0_DEPTHWISE:
        pads = (get_padding("symmetric", hw, k, s),) * 2
        kx, kk, kc = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (batch, hw, hw, c))
        w = jax.random.normal(kk, (k, k, 1, c))
        ho = (hw + sum(pads[0]) - k) // s + 1
        ct = jax.random.normal(kc, (batch, ho, ho, c))
        fa = make(depthwise._shifted, s, pads)
        fb = make(depthwise._native, s, pads)
        for a, b in zip(jax.tree.leaves(fa(x, w, ct)), jax.tree.leaves(fb(x, w, ct))):
            err = float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
            if err > 1e-5:
                raise AssertionError(f"{hw}x{hw}x{c} k{k} s{s}: A and B differ by {err:.1e}")
        ta, tb = [], []
        for _ in range(rounds):
            ta.append(once(fa, x, w, ct))
            tb.append(once(fb, x, w, ct))
        results.append((min(ta), min(tb)))
        print(
            f"{hw}x{hw}x{c} k{k} s{s}: A {min(ta) * 1e3:.1f} ms, B {min(tb) * 1e3:.1f} ms",
            flush=True,
        )
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch_python", default="")
    p.add_argument("--out", default="bench_ops.md")
    args = p.parse_args(argv)
    import json

    ours = bench_jax(args.batch, args.rounds)
    torch_times, note = None, "not run (no --torch_python)"
    if args.torch_python:
        out, err = benchutil.run_reference(
            args.torch_python,
            TORCH_SCRIPT,
            json.dumps(B0_DEPTHWISE),
            args.batch,
            args.rounds,
            os.cpu_count(),
        )
        torch_times, note = (out["times"], out["version"]) if out else (None, err)
    lines = [
        f"Depthwise conv forward + both gradients, EfficientNet-B0 shapes, batch {args.batch}, "
        f"best of {args.rounds}; A = pure-JAX shifted form, B = native kernels; torch: {note}",
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
    benchutil.write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
