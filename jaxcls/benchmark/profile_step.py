"""Where a model's train step spends its time on CPU: XLA thunk times grouped by HLO op (the
library half of ``tools/profile_step.py``).

`profile` compiles the trainer's real train step (`train_step.train_setup`), runs it once to warm
up, then once under ``jax.profiler`` and reads the trace back (``jax.profiler.ProfileData``). Each
executed XLA:CPU thunk is one event; `print_report` sums them per thunk and per (thunk kind, JAX
op name), using the op_name metadata of the compiled HLO (`hlo_op_names`). Times are summed over
the threads that run thunks, so they add up to at most threads x wall time.
"""

from __future__ import annotations

import collections
import glob
import re
import tempfile
import time

from jaxcls.benchmark import common, train_step


def hlo_op_names(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Instruction name -> (result shape, op_name metadata) from compiled HLO text."""
    info = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s+(?:ROOT )?%(\S+) = (\S+) ", line)
        if m:
            op = re.search(r'op_name="([^"]*)"', line)
            info[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return info


def thunk_times(trace_dir: str) -> collections.Counter:
    """Nanoseconds per XLA:CPU thunk name, summed over the threads that run thunks in the trace
    in ``trace_dir``: XLA's worker threads and the PjRt client thread that starts each program
    (it runs thunks too: ResNet-18's max-pool gradient iotas, 23-36 ms of a 48 px step, ran
    there)."""
    import jax

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    data = jax.profiler.ProfileData.from_file(path)
    per = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # tf_XLAEigen/..., tf_XLAPjRtCpuClient/...
                continue
            for ev in line.events:
                if not ev.name.startswith(("ThunkExecutor", "ThreadpoolListener", "end: ")):
                    per[ev.name] += ev.duration_ns
    return per


def profile(
    name: str, batch: int, size: int, devices: int = 1
) -> tuple[float, dict[str, int], dict]:
    """Returns (step seconds, ns per thunk, HLO info)."""
    import jax

    params, rest, tx, make_steps, b = train_step.train_setup(name, batch, size, devices=devices)
    compiled = make_steps()
    state = train_step.initial_state(compiled, params, rest, tx)
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
        per = thunk_times(d)
    return step_s, per, info


def print_report(
    model: str, batch: int, size: int, top: int, step_s: float, per: dict, info: dict
) -> None:
    """The time by (thunk kind, JAX op) and the largest single thunks, ``top`` of each."""
    total = sum(per.values())
    print(
        f"{model} batch {batch} {size}px: step {step_s:.2f} s, thunk time summed "
        f"over threads {total / 1e9:.2f} s\n\nby thunk kind and JAX op:"
    )
    groups, counts = collections.Counter(), collections.Counter()
    for n, v in per.items():
        key = (re.sub(r"\.\d+$", "", n), info.get(n, ("?", "?"))[1])
        groups[key] += v
        counts[key] += 1
    for (kind, op), v in groups.most_common(top):
        print(f"{v / 1e9:8.3f} s {100 * v / total:5.1f}% {counts[(kind, op)]:4d}x {kind:28s} {op}")
    print("\nlargest single thunks:")
    for n, v in per.most_common(top):
        shape, op = info.get(n, ("?", "?"))
        print(f"{v / 1e9:8.3f} s {n:32s} {shape:36s} {op}")


def run(
    model: str, *, batch: int = 32, size: int = 224, top: int = 30, cpu_devices: int = 1
) -> int:
    """Profiles one train step of ``model`` and prints the report; returns 0."""
    common.prepare_process(cpu_devices)  # before JAX starts its backends
    step_s, per, info = profile(model, batch, size, cpu_devices)
    print_report(model, batch, size, top, step_s, per, info)
    return 0
