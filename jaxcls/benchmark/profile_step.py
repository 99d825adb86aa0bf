"""Where a model's train step spends its time on CPU: XLA thunk times grouped by HLO op (the
library half of ``tools/profile_step.py``).

`profile` compiles the trainer's real train step (`train_step.train_setup`), runs it once to warm
up, then ``steps`` times under ``jax.profiler`` and reads the trace back
(``jax.profiler.ProfileData``). Each executed XLA:CPU thunk is one event; `print_report` sums them
per thunk and per (thunk kind, JAX op name), using the op_name metadata of the compiled HLO
(`hlo_op_names`), and divides by the steps. Times are summed over the threads that run thunks, so
they add up to at most threads x wall time. Times print in milliseconds: a small model's step
takes a few of them.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import re
import statistics
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


def thunk_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter, float]:
    """Nanoseconds and executions per XLA:CPU thunk name, summed over the threads that run
    thunks in the trace in ``trace_dir``: XLA's worker threads and the PjRt client thread that
    starts each program (it runs thunks too: ResNet-18's max-pool gradient iotas, 23-36 ms of a
    48 px step, ran there); and the nanoseconds, within the programs' runs, when no thunk ran on
    any thread (`idle_ns`)."""
    import jax

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    data = jax.profiler.ProfileData.from_file(path)
    per, runs = collections.Counter(), collections.Counter()
    thunks, programs = [], []
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # tf_XLAEigen/..., tf_XLAPjRtCpuClient/...
                continue
            for ev in line.events:
                span = (ev.start_ns, ev.start_ns + ev.duration_ns)
                if ev.name.startswith("ThunkExecutor::Execute (wait for completion)"):
                    programs.append(span)
                elif not ev.name.startswith(("ThunkExecutor", "ThreadpoolListener", "end: ")):
                    per[ev.name] += ev.duration_ns
                    runs[ev.name] += 1
                    thunks.append(span)
    return per, runs, idle_ns(programs, thunks)


def idle_ns(programs: list[tuple[float, float]], thunks: list[tuple[float, float]]) -> float:
    """The time within the ``programs`` spans (start, end) covered by none of the ``thunks``
    spans. XLA:CPU's library dots and convolutions run asynchronously: their thunk event ends
    when they are handed to the thread pool, and the rest of their time shows up here."""
    busy = []
    for start, end in sorted(thunks):
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    idle = 0.0
    for p0, p1 in programs:
        covered = sum(max(0.0, min(p1, b1) - max(p0, b0)) for b0, b1 in busy)
        idle += (p1 - p0) - covered
    return idle


def _train_call(name: str, batch: int, size: int, devices: int):
    """``(call, compiled HLO text)``: one train step of the trainer's real step per call."""
    import jax

    params, rest, tx, make_steps, b = train_step.train_setup(name, batch, size, devices=devices)
    compiled = make_steps()
    state = [train_step.initial_state(compiled, params, rest, tx)]
    hlo = compiled.train.lower(state[0], b).compile().as_text()

    def call():
        state[0], m = compiled.train(state[0], b)
        jax.block_until_ready(m)

    return call, hlo


def _forward_call(name: str, batch: int, size: int):
    """``(call, compiled HLO text)``: the eval-mode forward pass of ``batch`` images on one device
    per call, as `measure.latency` times it at batch 1."""
    import jax

    from jaxcls.benchmark import measure

    subject = measure.from_registry(name, size)
    x = measure.images(subject, batch)
    compiled, _, _ = measure.compile_timed(
        measure.forward_fn(subject), subject.params, subject.rest, x
    )

    def call():
        jax.block_until_ready(compiled(subject.params, subject.rest, x))

    return call, compiled.as_text()


def profile(
    name: str,
    batch: int,
    size: int,
    devices: int = 1,
    steps: int = 1,
    forward: bool = False,
    variant: str | None = None,
) -> tuple[float, dict[str, float], dict, float, float]:
    """Returns (median step seconds, ns per thunk per step, HLO info, thunk runs per step, ns per
    step when no thunk ran) over ``steps`` profiled train steps, or forward passes; the program
    traced under ``tools/bench_ab.py``'s ``variant`` (its side A) where one is given."""
    import jax

    from jaxcls.benchmark import ab

    with ab.variant_context(variant) if variant else contextlib.nullcontext():
        call, hlo = (
            _forward_call(name, batch, size) if forward else _train_call(name, batch, size, devices)
        )
        call()
    info = hlo_op_names(hlo)
    times = []
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        for _ in range(steps):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        jax.profiler.stop_trace()
        per, runs, idle = thunk_times(d)
    per = collections.Counter({n: v / steps for n, v in per.items()})
    return statistics.median(times), per, info, sum(runs.values()) / steps, idle / steps


def print_report(
    model: str,
    batch: int,
    size: int,
    top: int,
    step_s: float,
    per: dict,
    info: dict,
    *,
    steps: int = 1,
    thunk_runs: float | None = None,
    idle_ns: float | None = None,
    what: str = "step",
) -> None:
    """The time per step (or forward pass: ``what``) by (thunk kind, JAX op) and the largest
    single thunks, ``top`` of each."""
    total = sum(per.values())
    plural = what + ("es" if what.endswith("s") else "s")
    over = f" (median of {steps} {plural}; thunk times are means per {what})" if steps > 1 else ""
    runs = f", {thunk_runs:.0f} thunk runs" if thunk_runs is not None else ""
    print(
        f"{model} batch {batch} {size}px: {what} {step_s * 1e3:.2f} ms{over}, thunk time summed "
        f"over threads {total / 1e6:.2f} ms{runs}"
    )
    if idle_ns is not None:
        print(
            f"no thunk running for {idle_ns / 1e6:.2f} ms of the {what} (XLA's library dots and "
            "convolutions finish after their thunk: most of that is theirs)"
        )
    print("\nby thunk kind and JAX op:")
    groups, counts = collections.Counter(), collections.Counter()
    for n, v in per.items():
        key = (re.sub(r"\.\d+$", "", n), info.get(n, ("?", "?"))[1])
        groups[key] += v
        counts[key] += 1
    for (kind, op), v in groups.most_common(top):
        print(
            f"{v / 1e6:10.2f} ms {100 * v / total:5.1f}% {counts[(kind, op)]:4d}x {kind:28s} {op}"
        )
    print("\nlargest single thunks:")
    for n, v in per.most_common(top):
        shape, op = info.get(n, ("?", "?"))
        print(f"{v / 1e6:10.2f} ms {n:32s} {shape:36s} {op}")


def run(
    model: str,
    *,
    batch: int = 32,
    size: int = 224,
    top: int = 30,
    cpu_devices: int = 1,
    steps: int = 1,
    forward: bool = False,
    variant: str | None = None,
) -> int:
    """Profiles ``steps`` train steps of ``model`` (``forward``: eval-mode forward passes on one
    device; ``variant``: bench_ab's side A) and prints the report; returns 0."""
    common.prepare_process(cpu_devices)  # before JAX starts its backends
    step_s, per, info, thunk_runs, idle = profile(
        model, batch, size, cpu_devices, steps, forward, variant
    )
    what = "forward pass" if forward else "step"
    print_report(
        model,
        batch,
        size,
        top,
        step_s,
        per,
        info,
        steps=steps,
        thunk_runs=thunk_runs,
        idle_ns=idle,
        what=what,
    )
    return 0
