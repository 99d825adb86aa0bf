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
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import models  # noqa: E402


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
    return models.run(
        args.models.split(","),
        batch=args.batch,
        size=args.size,
        steps=args.steps,
        rounds=args.rounds,
        torch_python=args.torch_python,
        no_torch=args.no_torch,
        out=args.out,
        cpu_devices=args.cpu_devices,
    )


if __name__ == "__main__":
    sys.exit(main())
