r"""Where a model's train step spends its time on CPU: XLA thunk times grouped by HLO op.

  python tools/profile_step.py --model=efficientnet_b0 [--batch=32] [--size=224] [--top=30]
      [--cpu_devices=1] [--steps=1] [--forward] [--variant=V]

Compiles the trainer's real train step (steps.CompiledSteps, SGD with momentum), runs it once to
warm up, then ``--steps`` times under ``jax.profiler`` and reads the trace back (``jax.profiler.ProfileData``).
Each executed XLA:CPU thunk (a fusion, a library GEMM/convolution/reduction 'ynn_fusion', a copy)
is one event; events are summed per thunk and per (thunk kind, JAX op name) using the op_name
metadata of the compiled HLO, e.g. ``transpose(jvp())/reduce_sum`` is a reduction in the backward
pass. Times are per step (means over the profiled steps, in milliseconds) and summed over XLA's
worker threads, so they add up to about threads x wall time. Small models' steps vary from one to
the next: profile several (``--steps=20``). The report also gives the time within each step when
no thunk ran on any thread: XLA:CPU's library dots and convolutions run asynchronously, their
thunk event ending when they are handed to the thread pool, so most of that time is theirs (at
batch 1 it was where XLA's 512-channel convolutions hid). ``--forward`` profiles the eval-mode
forward pass on one device instead (``--batch=1``: what batch-1 latency times). ``--variant``
profiles the program ``tools/bench_ab.py`` runs as side A of that variant (the reference form).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import ab, common, profile_step  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "profile_step"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--batch", type=cli.positive_int, default=32)
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--top", type=cli.positive_int, default=30)
    p.add_argument(
        "--cpu_devices", type=cli.positive_int, default=1, help="data-parallel XLA:CPU devices"
    )
    p.add_argument(
        "--steps", type=cli.positive_int, default=1, help="profiled steps (times are per step)"
    )
    p.add_argument(
        "--forward",
        action="store_true",
        help="profile the eval-mode forward pass on one device instead of the train step "
        "(--batch=1: what batch-1 latency times)",
    )
    p.add_argument(
        "--variant",
        choices=ab.VARIANTS,
        help="trace the program as tools/bench_ab.py's side A of this variant (the reference "
        "formulation) instead of the current one",
    )
    args = p.parse_args(argv)
    try:
        common.check_batch_divides(args.batch, args.cpu_devices)
    except common.UsageError as e:
        return cli.fail(TOOL, e)
    common.prepare_process(args.cpu_devices)  # before the check below starts JAX's backends
    try:  # before compiling anything: a known name, a size the model can take
        cli.check_models([args.model], args.size)
    except ValueError as e:
        return cli.fail(TOOL, e)
    return profile_step.run(
        args.model,
        batch=args.batch,
        size=args.size,
        top=args.top,
        cpu_devices=args.cpu_devices,
        steps=args.steps,
        forward=args.forward,
        variant=args.variant,
    )


if __name__ == "__main__":
    sys.exit(main())
