r"""Accelerator check, in minutes: train throughput and MFU of the trainer's real step for
ResNet-50 and EfficientNet-B0 (bf16 compute, float32 parameters, synthetic data, NHWC as XLA
prefers), timm beside it when PyTorch and timm are importable (torch.compile + bf16 autocast +
channels-last, the fastest common PyTorch recipe), then one short real training run.

  python tools/device_check.py [--models=resnet50,efficientnet_b0] [--batch=256] [--size=224]
      [--steps=20] [--rounds=3] [--no_timm] [--no_train_run] [--out=DIR]

``tools/device_check.sh`` installs the matching extra first and calls this. Rows print as they
finish; the table goes to ``DIR/device_check.md`` and the rows to ``device_check.json``. The
sides alternate per round (ours, timm, ours, ...) and the medians are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import traceback

# Three processes share the accelerator (this one, timm's and the training run's): JAX's default,
# taking 75% of a GPU's memory when it starts, would leave the other two too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls import files  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "device_check"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# timm's side, in its own process: a train step (SGD + momentum, cross-entropy) under
# torch.compile, bf16 autocast, channels-last. Compiles, prints {"ready": ...}, then times one round
# per line read from stdin and prints {"rate": images/s}.
TIMM_SCRIPT = r"""
import json, sys, time
import torch, timm
name, batch, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
dev = "cuda" if torch.cuda.is_available() else "cpu"
model = timm.create_model(name, pretrained=False, num_classes=1000).to(dev).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
y = torch.randint(0, 1000, (batch,), device=dev)
def step():
    with torch.autocast(dev, dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
step = torch.compile(step)
def sync():
    if dev == "cuda": torch.cuda.synchronize()
t0 = time.perf_counter(); step(); step(); sync()
print(json.dumps({"ready": time.perf_counter() - t0, "torch": torch.__version__, "timm": timm.__version__}), flush=True)
for _ in sys.stdin:
    t0 = time.perf_counter()
    for _ in range(steps): step()
    sync()
    print(json.dumps({"rate": steps * batch / (time.perf_counter() - t0)}), flush=True)
"""


class Ours:
    """The trainer's real train step for ``name`` in bf16 over every device, compiled once."""

    def __init__(self, name: str, batch: int, size: int, steps: int):
        import jax

        from jaxcls.benchmark import measure

        self.subject = measure.from_registry(name, size, dtype="bfloat16")
        self.compiled, self.state, self.data = measure.train_setup(self.subject, batch, 0)
        self.batch, self.steps, self.jax = batch, steps, jax
        t0 = time.perf_counter()
        self._round(1)
        self.first_step_s = time.perf_counter() - t0

    def _round(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.compiled.train(self.state, self.data)
        self.jax.block_until_ready(metrics)
        return steps * self.batch / (time.perf_counter() - t0)

    def round(self) -> float:
        return self._round(self.steps)

    def gflops(self) -> float:
        """Forward GFLOPs from XLA's cost analysis of the lowered program (nothing compiled)."""
        from jaxcls.models.summary import forward_gflops

        return forward_gflops(self.subject.model, self.subject.image_size)


class Timm:
    """timm in a separate interpreter (this one), one timed round per `round` call."""

    def __init__(self, name: str, batch: int, size: int, steps: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TIMM_SCRIPT, name, str(batch), str(size), str(steps)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            why = (self.proc.stderr.read().strip().splitlines() or ["failed"])[-1]
            raise RuntimeError(why)
        self.info = json.loads(line)

    def round(self) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["rate"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def measure_model(name: str, args) -> dict:
    ours = Ours(name, args.batch, args.size, args.steps)
    theirs = None
    if not args.no_timm:
        try:
            theirs = Timm(name, args.batch, args.size, args.steps)
        except (RuntimeError, OSError) as e:
            print(f"  timm {name}: not measured ({e})", flush=True)
    try:
        return _measure_both(name, args, ours, theirs)
    finally:
        if theirs is not None:
            theirs.close()


def _measure_both(name: str, args, ours: Ours, theirs: Timm | None) -> dict:
    from jaxcls.benchmark import measure, mfu

    our_rates, their_rates = [], []
    for i in range(args.rounds):  # the sides alternate, one timed round each
        our_rates.append(ours.round())
        if theirs is not None:
            their_rates.append(theirs.round())
        print(
            f"  {name} round {i + 1}/{args.rounds}: jaxcls {our_rates[-1]:.0f} img/s"
            + (f", timm {their_rates[-1]:.0f} img/s" if their_rates else ""),
            flush=True,
        )
    info = measure.device_info()
    row = {"model": name, **info, "first_step_s": ours.first_step_s}
    row["train_img_s"] = statistics.median(our_rates)
    row["gflops"] = ours.gflops()
    row["mfu"] = mfu.mfu(
        row["train_img_s"], row["gflops"], info["device_kind"], ours.subject.dtype, info["devices"]
    )
    if theirs is not None:
        row["timm_img_s"] = statistics.median(their_rates)
        row["ratio_vs_timm"] = row["train_img_s"] / row["timm_img_s"]
        row["timm_versions"] = f"torch {theirs.info['torch']}, timm {theirs.info['timm']}"
        row["timm_compile_s"] = theirs.info["ready"]
    return row


def train_run(out: str) -> dict:
    """The README's scratch recipe on the built-in digits, bf16, a few epochs."""
    workdir = os.path.join(out, "train_run")
    cmd = [
        sys.executable, "-m", "jaxcls.main", "--config=configs/cnn.py", f"--workdir={workdir}",
        "--config.model.dtype=bfloat16", "--config.num_epochs=5",
    ]  # fmt: skip
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1], "wall_s": wall}
    with open(os.path.join(workdir, "results.json")) as f:
        res = json.load(f)
    return {
        "wall_s": wall,
        "test_accuracy": res["splits"]["test"]["accuracy"],
        "train_images_per_sec": res["train_images_per_sec"],
        "first_step_s": (res.get("efficiency") or {}).get("train_compile_s"),
        "platform": res["platform"],
    }


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--models", default="resnet50,efficientnet_b0")
    p.add_argument("--batch", type=cli.positive_int, default=256)
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--steps", type=cli.positive_int, default=20)
    p.add_argument("--rounds", type=cli.positive_int, default=3)
    p.add_argument("--no_timm", action="store_true")
    p.add_argument("--no_train_run", action="store_true")
    p.add_argument("--out", default="device_check")
    args = p.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    try:
        cli.check_models(names, args.size)
    except ValueError as e:
        return cli.fail(TOOL, e)
    os.makedirs(args.out, exist_ok=True)
    import jax

    devices = jax.devices()
    if args.batch % len(devices):
        return cli.fail(
            TOOL,
            f"--batch={args.batch} does not split over the {len(devices)} devices; "
            f"use a multiple of {len(devices)}",
        )
    print(f"JAX {jax.__version__}, devices: {devices}", flush=True)
    rows = []
    for name in names:
        try:
            row = measure_model(name, args)
        except Exception as e:  # noqa: BLE001 - one model's failure must not cost the others' rows
            traceback.print_exc()
            print(f"{name}: not measured ({type(e).__name__}: {e})", flush=True)
            continue
        rows.append(row)
        mfu_text = f"{row['mfu']:.1%}" if row["mfu"] else "n/a"
        print(
            f"{name}: {row['train_img_s']:.0f} img/s, MFU {mfu_text}, first step "
            f"{row['first_step_s']:.1f} s"
            + (
                f", timm {row['timm_img_s']:.0f} img/s ({row['ratio_vs_timm']:.2f}x)"
                if "timm_img_s" in row
                else ""
            ),
            flush=True,
        )
    run = None if args.no_train_run else train_run(args.out)
    if run is not None:
        print(f"train run (configs/cnn.py, digits, bf16, 5 epochs): {run}", flush=True)
    lines = [
        f"device: {devices[0].device_kind} x{len(devices)} ({devices[0].platform}), "
        f"batch {args.batch}, {args.size} px, bf16 compute, synthetic data",
        "",
        "| model | jaxcls train img/s | MFU | timm (compile+AMP+CL) img/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mfu_text = f"{r['mfu']:.1%}" if r["mfu"] else "n/a"
        t = f"{r['timm_img_s']:.0f}" if "timm_img_s" in r else "n/a"
        ratio = f"{r['ratio_vs_timm']:.2f}x" if "ratio_vs_timm" in r else "n/a"
        lines.append(f"| {r['model']} | {r['train_img_s']:.0f} | {mfu_text} | {t} | {ratio} |")
    table = "\n".join(lines)
    print("\n" + table)
    files.write_text(os.path.join(args.out, "device_check.md"), table + "\n")
    files.write_json(os.path.join(args.out, "device_check.json"), {"rows": rows, "train_run": run})
    return 0 if len(rows) == len(names) and not (run or {}).get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
