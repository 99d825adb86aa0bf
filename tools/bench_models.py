r"""Benchmarks models: forward (inference) and train-step images/sec, beside timm in PyTorch.

  python tools/bench_models.py --models=efficientnet_b0,resnet50,mobilenetv2_100 \
      [--batch=32] [--size=224] [--steps=5] [--torch_python=PY] [--out=bench_models.md]

jaxcls side: the model from the registry, a jitted forward in eval mode, and the trainer's real
train step (steps.CompiledSteps: SGD with momentum, cross-entropy, BatchNorm updates, donated state)
on one device. Compilation is excluded (one warm-up call each); the timed loop blocks on the result.
timm side (where torch and timm import in ``--torch_python``): the same model name with
pretrained=False, ``torch.inference_mode`` forward and a forward/backward/SGD step, channels-last,
torch threads = CPU cores. Prints a table and writes it as Markdown to --out.
"""

from __future__ import annotations

import argparse
import os
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


def bench_jaxcls(name: str, batch: int, size: int, steps: int, devices: int = 1) -> dict:
    import jax
    import jax.numpy as jnp

    params, rest, tx, make_steps, b = benchutil.train_setup(
        name, batch, size, mask=True, devices=devices
    )
    compiled = make_steps()
    state = benchutil.initial_state(compiled, params, rest, tx)
    out = compiled.eval(state.params, state.rest, b)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = compiled.eval(state.params, state.rest, b)
    jax.block_until_ready(out)
    fwd = steps * batch / (time.perf_counter() - t0)
    train_batch = {k: v for k, v in b.items() if k != "mask"}
    t_compile = time.perf_counter()
    state, m = compiled.train(state, train_batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled.train(state, train_batch)
    jax.block_until_ready(m)
    train = steps * batch / (time.perf_counter() - t0)
    assert bool(jnp.isfinite(m["loss"]))
    return {"forward": fwd, "train": train, "first_step_s": compile_s}


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
    p.add_argument("--steps", type=int, default=5)
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
        benchutil.use_cpu_devices(args.cpu_devices)
    import jax

    rows = []
    for name in args.models.split(","):
        ours = bench_jaxcls(name, args.batch, args.size, args.steps, args.cpu_devices)
        theirs, note = (
            (None, "skipped")
            if args.no_torch
            else bench_timm(args.torch_python, name, args.batch, args.size, args.steps)
        )
        rows.append((name, ours, theirs, note))
        print(
            f"{name}: jaxcls forward {ours['forward']:.1f} img/s, train {ours['train']:.1f} img/s "
            f"(first step {ours['first_step_s']:.0f} s); timm "
            + (
                f"forward {theirs['forward']:.1f}, train {theirs['train']:.1f} img/s"
                if theirs
                else f"n/a ({note})"
            ),
            flush=True,
        )
    lines = [
        f"Models at batch {args.batch}, {args.size}x{args.size}, {jax.devices()[0].platform} "
        f"({os.cpu_count()} cores, jaxcls data-parallel over {args.cpu_devices} device(s)), "
        f"{args.steps} timed steps",
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
