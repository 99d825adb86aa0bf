r"""Where a model's train step spends its time on CPU: XLA thunk times grouped by HLO op.

  python tools/profile_step.py --model=efficientnet_b0 [--batch=32] [--size=224] [--top=30]
      [--cpu_devices=1]

Compiles the trainer's real train step (steps.CompiledSteps, SGD with momentum), runs it once to
warm up, then once under ``jax.profiler`` and reads the trace back (``jax.profiler.ProfileData``).
Each executed XLA:CPU thunk (a fusion, a library GEMM/convolution/reduction 'ynn_fusion', a copy)
is one event; events are summed per thunk and per (thunk kind, JAX op name) using the op_name
metadata of the compiled HLO, e.g. ``transpose(jvp())/reduce_sum`` is a reduction in the backward
pass. Times are summed over XLA's worker threads, so they add up to about threads x wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import benchutil  # noqa: E402


def hlo_op_names(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (result shape, op_name metadata) from compiled HLO text."""
    info = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s+(?:ROOT )?%(\S+) = (\S+) ", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            info[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return info


def profile(
    name: str, batch: int, size: int, devices: int = 1
) -> tuple[float, dict[str, int], dict]:
    """Returns (step seconds, ns per thunk, HLO info)."""
    import jax

    params, rest, tx, make_steps, b = benchutil.train_setup(name, batch, size, devices=devices)
    compiled = make_steps()
    state = benchutil.initial_state(compiled, params, rest, tx)
    info = hlo_op_names(compiled.train.lower(state, b).compile().as_text())
    state, m = compiled.train(state, b)
    jax.block_until_ready(m)
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        t0 = time.perf_counter()
        state, m = compiled.train(state, b)
        jax.block_until_ready(m)
        step_s = time.perf_counter() - t0
        jax.profiler.stop_trace()
        path = sorted(glob.glob(f"{d}/**/*.xplane.pb", recursive=True))[-1]
        data = jax.profiler.ProfileData.from_file(path)
        per = collections.Counter()
        for plane in data.planes:
            for line in plane.lines:
                if "XLAEigen" not in line.name:  # XLA:CPU's worker threads
                    continue
                for ev in line.events:
                    if not ev.name.startswith("ThunkExecutor"):
                        per[ev.name] += ev.duration_ns
    return step_s, per, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--cpu_devices", type=int, default=1, help="data-parallel XLA:CPU devices")
    args = p.parse_args(argv)
    if args.cpu_devices > 1:
        from jaxcls.trainer import parallel  # before JAX starts its backends

        parallel.request_cpu_devices(args.cpu_devices)
    step_s, per, info = profile(args.model, args.batch, args.size, args.cpu_devices)
    total = sum(per.values())
    print(
        f"{args.model} batch {args.batch} {args.size}px: step {step_s:.2f} s, thunk time summed "
        f"over threads {total / 1e9:.2f} s\n\nby thunk kind and JAX op:"
    )
    groups, counts = collections.Counter(), collections.Counter()
    for n, v in per.items():
        key = (re.sub(r"\.\d+$", "", n), info.get(n, ("?", "?"))[1])
        groups[key] += v
        counts[key] += 1
    for (kind, op), v in groups.most_common(args.top):
        print(f"{v / 1e9:8.3f} s {100 * v / total:5.1f}% {counts[(kind, op)]:4d}x {kind:28s} {op}")
    print("\nlargest single thunks:")
    for n, v in per.most_common(args.top):
        shape, op = info.get(n, ("?", "?"))
        print(f"{v / 1e9:8.3f} s {n:32s} {shape:36s} {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
