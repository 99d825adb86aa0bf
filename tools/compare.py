r"""Compares models the way users do: accuracy beside latency, memory and size, in one table.

  python tools/compare.py --models=mobilenetv2_100,resnet50,efficientnet_b0 --workdirs='runs/*' \
      --size=224 --out=DIR [--batch=32] [--repeats=20] [--rounds=1] [--train_steps=3] \
      [--no_train] [--bf16_size] [--cpu_devices=N] [--torch_python=PY [--torch_reuse_memory]] \
      [--max_steal=PCT] [--sort=accuracy]

Subjects: ``--models`` (registry names or Keras aliases, random weights, ``--size`` px, 1000
classes) and ``--workdirs`` (trained workdirs or converted checkpoints, at their own size and
classes; glob patterns are expanded here too, so a quoted ``'runs/*'`` works), in any mix.

Per subject (jaxcls/benchmark/measure.py): trainable and non-trainable (BatchNorm statistics)
parameters, GFLOPs (XLA's cost analysis), batch-1 latency p50/p90/std and its compile time,
inference img/s at ``--batch`` (one device), train img/s at ``--batch`` (the trainer's real train
step, SGD + momentum, data-parallel over ``--cpu_devices`` devices; 0: one or all of one device
per core, as the trainer picks for the model) and its first step's time,
XLA's memory analysis of the batch forward, the process's peak RSS growth, the device's peak
memory (GPU/TPU) and the size on disk (float32 Orbax; ``--bf16_size`` adds bfloat16). A workdir
adds from its results.json: test accuracy, macro-F1 and loss, each cross-dataset accuracy,
training wall time and training img/s.

``--torch_python=PY`` (an interpreter where torch and timm import) adds a ``<name> (timm)`` row
for each registry model timm has and a ``<name> (torch)`` row for each scratch CNN (the same
network rebuilt in PyTorch; only torch need import for these), measured the same way on the CPU;
per round the jaxcls and PyTorch measurements alternate (``--rounds``), so both see the same load,
and the table gives medians.
jaxcls runs with glibc's malloc set as the trainer sets it (``config.reuse_memory``), timm with
malloc as it comes, or with ``--torch_reuse_memory`` set the same way (through glibc's
``MALLOC_*`` environment variables): PyTorch's CPU steps page-fault their large buffers in
afresh too, and gain from it as much as jaxcls or more (docs/performance.md).
Each row also says how much of the CPU time the host of a virtual machine took away while it was
measured (column "CPU steal (%)"); ``--max_steal=PCT`` measures a round again, up to 3 more times,
while that share is over PCT.

Writes DIR/compare.csv (every column), DIR/compare.md (units in the headers), a bar chart per
metric (DIR/bar_<column>.png) and, when some subject has a test accuracy,
DIR/accuracy_vs_latency.png and DIR/accuracy_vs_size.png. Rows are sorted by ``--sort`` (a column
key, header or word: best first), by default by test accuracy, then latency. Bad input (unknown
model, missing workdir, a size the model cannot take, a --torch_python without torch, or without
timm for a model timm has) prints one line, ``compare: error: ...``, and exits with code 2 before
anything is measured.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import compare  # noqa: E402
from tools import cli  # noqa: E402


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv=None) -> argparse.Namespace:
    p, count = cli.ArgumentParser("compare", description=__doc__), cli.positive_int
    p.add_argument("--models", default="", help="registry names or aliases, comma-separated")
    p.add_argument("--workdirs", default="", help="workdirs, checkpoints or glob patterns")
    p.add_argument("--size", type=count, default=224, help="input size of registry models")
    p.add_argument("--out", required=True, help="folder for compare.csv, compare.md, plots")
    p.add_argument("--batch", type=count, default=32, help="batch of the img/s columns")
    p.add_argument("--repeats", type=count, default=20, help="timed batch-1 calls per round")
    p.add_argument("--rounds", type=count, default=1, help="rounds, jaxcls and timm alternating")
    p.add_argument("--train_steps", type=count, default=3, help="train steps per timed loop")
    p.add_argument("--no_train", action="store_true", help="skip the train img/s columns")
    p.add_argument("--bf16_size", action="store_true", help="add the bfloat16 size on disk")
    p.add_argument(
        "--cpu_devices",
        type=cli.non_negative_int,
        default=1,
        help="XLA:CPU devices to train over; 0: as the trainer (one per core, and each model "
        "trains on one or all of them)",
    )
    p.add_argument("--torch_python", default="", help="a Python with torch and timm: PyTorch rows")
    p.add_argument(
        "--torch_reuse_memory",
        action="store_true",
        help="run timm with glibc's malloc set as jaxcls sets it (MALLOC_ARENA_MAX=1, mmap and "
        "trim thresholds; config.reuse_memory) instead of as it comes",
    )
    p.add_argument(
        "--max_steal",
        type=cli.non_negative_float,
        default=None,
        help="measure a round again (up to 3 more times) when the host took more than this "
        "percentage of the CPU time meanwhile (Linux; column 'CPU steal')",
    )
    p.add_argument("--sort", default="", help="column to sort by (default: accuracy, latency)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    try:
        return compare.run(
            _names(args.models),
            _names(args.workdirs),
            out=args.out,
            sort=args.sort,
            cpu_devices=args.cpu_devices,
            size=args.size,
            batch=args.batch,
            repeats=args.repeats,
            rounds=args.rounds,
            train_steps=args.train_steps,
            train=not args.no_train,
            bf16=args.bf16_size,
            torch_python=args.torch_python,
            torch_reuse_memory=args.torch_reuse_memory,
            max_steal=args.max_steal,
        )
    except compare.UsageError as e:
        return cli.fail("compare", e)


if __name__ == "__main__":
    sys.exit(main())
