r"""Per-op benchmark: depthwise convolution forward + backward at EfficientNet-B0's shapes.

  python tools/bench_ops.py [--batch=32] [--rounds=3] [--torch_python=PY] [--out=bench_ops.md]

For each depthwise layer shape of EfficientNet-B0 at 224 px (input map, channels, kernel, stride;
``x N`` = how many layers of the model have it) it times one jitted call returning the output and
both gradients, for two implementations alternately in one process (A, B, A, B, ...):

* A ``shifted``: the pure-JAX form (tap sums with a custom VJP, models/depthwise.py), what CPU
  runs use where the native kernels cannot be built;
* B ``native``: the C++ kernels of jaxcls/native (XLA FFI custom calls), the CPU default.

Both are checked to agree (relative 1e-5) before timing. With ``--torch_python`` (an interpreter
with torch) it also times ``nn.Conv2d(groups=C)`` forward + backward, channels-last, at the same
shapes. Reported: the best of ``--rounds`` per variant (the least disturbed by other load) and the
totals weighted by the number of such layers in the model.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import ops  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "bench_ops"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--batch", type=cli.positive_int, default=32)
    p.add_argument("--rounds", type=cli.positive_int, default=3)
    p.add_argument("--torch_python", type=cli.executable, default="")
    p.add_argument("--out", type=cli.output_file, default="bench_ops.md")
    args = p.parse_args(argv)
    return ops.run(
        batch=args.batch, rounds=args.rounds, torch_python=args.torch_python, out=args.out
    )


if __name__ == "__main__":
    sys.exit(main())
