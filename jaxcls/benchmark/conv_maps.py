"""Per-op benchmark: dense convolutions over small feature maps, where XLA:CPU has a cliff (the
library half of ``tools/bench_ops.py --op=conv``).

For each (kernel, channels, map size) of `grid` it times the forward pass and the forward with
both gradients (input and weight) for two formulations in one process, alternating (A, B, A, B):

* A ``xla``: ``lax.conv_general_dilated``, what every map size used before the fix;
* B ``auto``: what the model zoo now runs (models/conv.py): one GEMM over gathered patches for
  maps of at most ``PATCHES_MAX_OUTPUT_PIXELS`` output pixels, the taps form for 1x1 kernels,
  XLA's convolution elsewhere.

Both sides compile with the trainer's XLA options (`conv.compiler_options`: Eigen convolutions).

Both are checked to agree (relative 1e-5) before timing. With a torch interpreter it also times
``nn.Conv2d`` channels-last at the same shapes (`TORCH_SCRIPT`, no jaxcls). Reported: the best of
the rounds (the least disturbed by other load), in ms, and the ratios.
"""

from __future__ import annotations

import json
import os

from jaxcls.benchmark import common

# Map sizes 1-16 and channel counts 64-2048 as ResNets use them: 3x3 convolutions at 64-512
# channels, 1x1 convolutions (bottleneck projections) at 1024-2048.
MAP_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16)
GRID_3X3_CHANNELS = (64, 128, 256, 512)
GRID_1X1_CHANNELS = (1024, 2048)


def grid(
    map_sizes=MAP_SIZES, channels=GRID_3X3_CHANNELS, kernels=(3, 1)
) -> list[tuple[int, int, int]]:
    """``(kernel, channels, map size)`` for every measured shape: 3x3 kernels at ``channels``,
    1x1 at `GRID_1X1_CHANNELS`, each kind only where it is in ``kernels``."""
    shapes = [(3, c, hw) for c in channels for hw in map_sizes] if 3 in kernels else []
    if 1 in kernels:
        shapes += [(1, c, hw) for c in GRID_1X1_CHANNELS for hw in map_sizes]
    return shapes


TORCH_SCRIPT = r"""
import json, sys, time, torch
shapes, batch, rounds = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]))
out = []
for k, c, hw in shapes:
    conv = torch.nn.Conv2d(c, c, k, 1, k // 2, bias=False)
    x = torch.randn(batch, c, hw, hw).to(memory_format=torch.channels_last).requires_grad_()
    ct = torch.randn_like(conv(x))
    def fwd():
        with torch.no_grad():
            conv(x)
    def both():
        x.grad = None; conv.weight.grad = None
        conv(x).backward(ct)
    times = []
    for fn in (fwd, both):
        fn(); ts = []
        for _ in range(rounds):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        times.append(min(ts))
    out.append(times)
print(json.dumps({"times": out, "version": f"torch {torch.__version__}"}))
"""


def _functions(impl: str, k: int):
    """Jitted ``forward(x, w)`` and ``both(x, w, ct) -> (y, (dx, dw))`` for ``impl``."""
    import jax

    from jaxcls.models.conv import compiler_options, conv2d

    pads = ((k // 2, k // 2),) * 2

    def f(x, w):
        return conv2d(x, w, pads=pads, impl=impl)

    def both(x, w, ct):
        y, vjp = jax.vjp(f, x, w)
        return y, vjp(ct)

    # Compiled as the trainer compiles its steps (XLA's convolutions with Eigen on CPU).
    options = compiler_options()
    return jax.jit(f, compiler_options=options), jax.jit(both, compiler_options=options)


def bench_shape(batch: int, rounds: int, k: int, c: int, hw: int) -> dict:
    """Best seconds of A and B, forward and forward + both gradients, at one shape."""
    import jax
    import jax.numpy as jnp

    from jaxcls.models.conv import resolve_conv_impl

    kx, kw, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (batch, hw, hw, c))
    w = jax.random.normal(kw, (k, k, c, c)) / (k * c**0.5)
    ct = jax.random.normal(kc, (batch, hw, hw, c))
    fa, ba = _functions("xla", k)
    fb, bb = _functions("auto", k)
    for a, b in zip(jax.tree.leaves(ba(x, w, ct)), jax.tree.leaves(bb(x, w, ct)), strict=True):
        err = float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
        if err > 1e-5:
            raise AssertionError(f"k{k} C{c} {hw}x{hw}: xla and auto differ by {err:.1e}")
    (
        common.seconds_once(fa, x, w),
        common.seconds_once(fb, x, w),
    )  # compiled before timing, like the two above
    times = {"fa": [], "fb": [], "ba": [], "bb": []}
    for _ in range(rounds):
        times["fa"].append(common.seconds_once(fa, x, w))
        times["fb"].append(common.seconds_once(fb, x, w))
        times["ba"].append(common.seconds_once(ba, x, w, ct))
        times["bb"].append(common.seconds_once(bb, x, w, ct))
    row = {name: min(ts) for name, ts in times.items()}
    row["impl"] = resolve_conv_impl("auto", (k, k), (hw, hw), c, c)
    return row


def bench_torch(python: str, shapes, batch: int, rounds: int):
    out, err = common.run_reference(
        python, TORCH_SCRIPT, json.dumps(shapes), batch, rounds, os.cpu_count()
    )
    return (out["times"], out["version"]) if out else (None, err)


def table_lines(shapes, ours, torch_times, note: str, batch: int, rounds: int) -> list[str]:
    lines = [
        f"Dense conv (stride 1, 'same'), batch {batch}, best of {rounds}, ms. A = XLA's "
        "convolution (before), B = what the zoo runs now (impl); fwd = forward, "
        f"f+b = forward + input and weight gradients. torch: {note}",
        "",
        "| k | C | map | impl | A fwd | B fwd | A/B fwd | A f+b | B f+b | A/B f+b "
        "| torch fwd | torch f+b | torch/B f+b |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, ((k, c, hw), r) in enumerate(zip(shapes, ours, strict=True)):
        t = torch_times[i] if torch_times else None
        t_cols = f"{t[0] * 1e3:.2f} | {t[1] * 1e3:.2f} | {t[1] / r['bb']:.2f}" if t else "- | - | -"
        lines.append(
            f"| {k} | {c} | {hw} | {r['impl']} | {r['fa'] * 1e3:.2f} | {r['fb'] * 1e3:.2f} | "
            f"{r['fa'] / r['fb']:.2f} | {r['ba'] * 1e3:.2f} | {r['bb'] * 1e3:.2f} | "
            f"{r['ba'] / r['bb']:.2f} | {t_cols} |"
        )
    return lines


def run(
    *,
    batch: int = 32,
    rounds: int = 3,
    torch_python: str = "",
    out: str = "bench_conv_maps.md",
    map_sizes=MAP_SIZES,
    channels=GRID_3X3_CHANNELS,
    kernels=(3, 1),
) -> int:
    shapes = grid(map_sizes, channels, kernels)
    ours = []
    for n, (k, c, hw) in enumerate(shapes, 1):
        r = bench_shape(batch, rounds, k, c, hw)
        ours.append(r)
        print(
            f"[{n}/{len(shapes)}] k{k} C{c} {hw}x{hw} ({r['impl']}): fwd A {r['fa'] * 1e3:.2f} "
            f"B {r['fb'] * 1e3:.2f} ms; f+b A {r['ba'] * 1e3:.2f} B {r['bb'] * 1e3:.2f} ms",
            flush=True,
        )
    torch_times, note = None, "not run (no --torch_python)"
    if torch_python:
        torch_times, note = bench_torch(torch_python, shapes, batch, rounds)
    common.write_table(table_lines(shapes, ours, torch_times, note, batch, rounds), out)
    return 0
