r"""Benchmarks models: forward (inference) and train-step images/sec, beside timm in PyTorch.

  python tools/bench_models.py --models=efficientnet_b0,resnet50,mobilenetv2_100 \
      [--batch=32] [--size=224] [--steps=5] [--rounds=1] [--cpu_devices=1] [--torch_python=PY] \
      [--out=bench_models.md]

jaxcls side: the model from the registry, a jitted forward in eval mode, and the trainer's real
train step (steps.CompiledSteps: SGD with momentum, cross-entropy, BatchNorm updates, donated state),
data-parallel over ``--cpu_devices`` XLA:CPU devices (the trainer's default on CPU is one per core).
Compilation is excluded (one warm-up call each); the timed loop blocks on the result. With
``--rounds=R`` the jaxcls and timm measurements alternate R times per model and the table gives
the medians, so that both sides see the same machine load.
timm side (where torch and timm import in ``--torch_python``): the same model name with
pretrained=False, ``torch.inference_mode`` forward and a forward/backward/SGD step, channels-last,
torch threads = CPU cores. Prints a table and writes it as Markdown to --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import benchutil  # noqa: E402

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
        params, rest, tx, make_steps, self.b = benchutil.train_setup(
            name, batch, size, mask=True, devices=devices
        )
        self.compiled = make_steps()
        self.state = benchutil.initial_state(self.compiled, params, rest, tx)
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


def _per_round(runs: list[dict]) -> str:
    return ", ".join("{:.1f}".format(r["train"]) for r in runs)


def bench_timm(python: str, name: str, batch: int, size: int, steps: int):
    out, error = benchutil.run_reference(python, TORCH_SCRIPT, name, batch, size, steps)
    return (out, out["version"]) if out else (None, error)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="efficientnet_b0,resnet50,mobilenetv2_100")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds per model, jaxcls and timm alternating; the table gives the medians",
    )
    p.add_argument("--torch_python", default=sys.executable)
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--out", default="bench_models.md")
    p.add_argument(
        "--cpu_devices",
        type=int,
        default=1,
        help="XLA:CPU devices to run data-parallel over (one per core is what the trainer uses)",
    )
    args = p.parse_args(argv)
    if args.cpu_devices > 1:
        from jaxcls.trainer import parallel  # before JAX starts its backends

        parallel.request_cpu_devices(args.cpu_devices)
    import jax

    rows = []
    for name in args.models.split(","):
        ours_bench = JaxclsBench(name, args.batch, args.size, args.cpu_devices)
        ours_runs, theirs_runs, note = [], [], "skipped"
        for _ in range(args.rounds):  # jaxcls and timm alternate: both see the same machine load
            ours_runs.append(ours_bench.run(args.steps))
            if not args.no_torch:
                theirs, note = bench_timm(
                    args.torch_python, name, args.batch, args.size, args.steps
                )
                if theirs:
                    theirs_runs.append(theirs)
        ours = {k: _median(ours_runs, k) for k in ("forward", "train")}
        theirs = {k: _median(theirs_runs, k) for k in ("forward", "train")} if theirs_runs else None
        rows.append((name, ours, theirs, note))
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
    lines = [
        f"Models at batch {args.batch}, {args.size}x{args.size}, {jax.devices()[0].platform} "
        f"({os.cpu_count()} cores, jaxcls data-parallel over {args.cpu_devices} device(s)), "
        f"medians of {args.rounds} alternating round(s) of {args.steps} timed steps",
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
    benchutil.write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
