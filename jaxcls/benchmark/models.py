"""Models' forward (inference) and train-step images/sec, beside timm in PyTorch (the library half
of ``tools/bench_models.py``).

jaxcls side (`JaxclsBench`): the model from the registry, its jitted eval step, and the trainer's
real train step (`train_step.train_setup`), data-parallel over the requested devices; compilation
is excluded and the timed loops block on their results. timm side (`TORCH_SCRIPT`, run in another
interpreter by `common.run_reference`, which needs torch and timm but not jaxcls): the same model
name with pretrained=False, ``torch.inference_mode`` forward and a forward/backward/SGD step,
channels-last. With several rounds the two sides alternate, so both see the same machine load.
"""

from __future__ import annotations

import os
import statistics
import time

from jaxcls.benchmark import common, train_step

TORCH_SCRIPT = r"""
import json, sys, time
import torch, timm
name, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = timm.create_model(name, pretrained=False, num_classes=1000).to(memory_format=torch.channels_last)
x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
y = torch.randint(0, 1000, (batch,))
model.eval()
with torch.inference_mode():
    model(x)
    t0 = time.perf_counter()
    for _ in range(steps):
        model(x)
    fwd = steps * batch / (time.perf_counter() - t0)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
step()
t0 = time.perf_counter()
for _ in range(steps):
    step()
train = steps * batch / (time.perf_counter() - t0)
print(json.dumps({"forward": fwd, "train": train, "version": f"torch {torch.__version__}, timm {timm.__version__}"}))
"""


class JaxclsBench:
    """The jaxcls side, compiled once: ``run(steps)`` times ``steps`` forward calls and ``steps``
    train steps and returns ``{'forward': img/s, 'train': img/s}``."""

    def __init__(self, name: str, batch: int, size: int, devices: int = 1):
        import jax

        self.batch = batch
        params, rest, tx, make_steps, self.b = train_step.train_setup(
            name, batch, size, mask=True, devices=devices
        )
        self.compiled = make_steps()
        self.state = train_step.initial_state(self.compiled, params, rest, tx)
        self.train_batch = {k: v for k, v in self.b.items() if k != "mask"}
        jax.block_until_ready(self.compiled.eval(self.state.params, self.state.rest, self.b))
        t0 = time.perf_counter()
        self.state, m = self.compiled.train(self.state, self.train_batch)
        jax.block_until_ready(m)
        self.first_step_s = time.perf_counter() - t0

    def run(self, steps: int) -> dict:
        import jax
        import jax.numpy as jnp

        t0 = time.perf_counter()
        for _ in range(steps):
            out = self.compiled.eval(self.state.params, self.state.rest, self.b)
        jax.block_until_ready(out)
        fwd = steps * self.batch / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, m = self.compiled.train(self.state, self.train_batch)
        jax.block_until_ready(m)
        train = steps * self.batch / (time.perf_counter() - t0)
        assert bool(jnp.isfinite(m["loss"]))
        return {"forward": fwd, "train": train}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _medians(runs: list[dict]) -> dict:
    return {k: _median(runs, k) for k in ("forward", "train")}


def _per_round(runs: list[dict]) -> str:
    return ", ".join("{:.1f}".format(r["train"]) for r in runs)


def bench_timm(python: str, name: str, batch: int, size: int, steps: int):
    """timm's ``({'forward', 'train'} img/s, version)``, or ``(None, why not)``."""
    out, error = common.run_reference(python, TORCH_SCRIPT, name, batch, size, steps)
    return (out, out["version"]) if out else (None, error)


def bench_model(name, batch, size, steps, rounds, torch_python, no_torch, devices):
    """Alternates ``rounds`` jaxcls and timm measurements of model ``name`` and prints a line;
    returns ``(name, jaxcls medians, timm medians or None, note)``."""
    ours_bench = JaxclsBench(name, batch, size, devices)
    ours_runs, theirs_runs, note = [], [], "skipped"
    for _ in range(rounds):  # jaxcls and timm alternate: both see the same machine load
        ours_runs.append(ours_bench.run(steps))
        if not no_torch:
            theirs, note = bench_timm(torch_python, name, batch, size, steps)
            if theirs:
                theirs_runs.append(theirs)
    ours, theirs = _medians(ours_runs), _medians(theirs_runs) if theirs_runs else None
    print(
        f"{name}: jaxcls forward {ours['forward']:.1f} img/s, train {ours['train']:.1f} img/s "
        f"(first step {ours_bench.first_step_s:.0f} s; train per round "
        f"{_per_round(ours_runs)}); timm "
        + (
            f"forward {theirs['forward']:.1f}, train {theirs['train']:.1f} img/s (train per "
            f"round {_per_round(theirs_runs)})"
            if theirs
            else f"n/a ({note})"
        ),
        flush=True,
    )
    return name, ours, theirs, note


def table_lines(rows, *, batch, size, steps, rounds, devices, platform) -> list[str]:
    """The Markdown table of `bench_model` rows, under a line saying how they were measured."""
    lines = [
        f"Models at batch {batch}, {size}x{size}, {platform} "
        f"({os.cpu_count()} cores, jaxcls data-parallel over {devices} device(s)), "
        f"medians of {rounds} alternating round(s) of {steps} timed steps",
        "",
        "| model | jaxcls forward img/s | timm forward img/s | jaxcls train img/s | timm train img/s | train ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, ours, theirs, _note in rows:
        tf = f"{theirs['forward']:.1f}" if theirs else "n/a"
        tt = f"{theirs['train']:.1f}" if theirs else "n/a"
        ratio = f"{ours['train'] / theirs['train']:.2f}x" if theirs else "-"
        lines.append(
            f"| {name} | {ours['forward']:.1f} | {tf} | {ours['train']:.1f} | {tt} | {ratio} |"
        )
    return lines


def run(
    models: list[str],
    *,
    batch: int = 32,
    size: int = 224,
    steps: int = 5,
    rounds: int = 1,
    torch_python: str = "",
    no_torch: bool = False,
    out: str = "bench_models.md",
    cpu_devices: int = 1,
) -> int:
    """Benchmarks every model, prints the table and writes it to ``out``; returns 0."""
    common.use_cpu_devices(cpu_devices)  # before JAX starts its backends
    import jax

    rows = [
        bench_model(name, batch, size, steps, rounds, torch_python, no_torch, cpu_devices)
        for name in models
    ]
    lines = table_lines(
        rows,
        batch=batch,
        size=size,
        steps=steps,
        rounds=rounds,
        devices=cpu_devices,
        platform=jax.devices()[0].platform,
    )
    common.write_table(lines, out)
    return 0
