r"""Per-op benchmarks: depthwise convolution at EfficientNet-B0's shapes (``--op=depthwise``, the
default), dense convolutions over feature maps of 1-16 pixels (``--op=conv``), or the native CPU
kernels against XLA's own form at ResNet's 224 px shapes (``--op=kernels``).

  python tools/bench_ops.py [--op=depthwise|conv|kernels] [--batch=32] [--rounds=3]
      [--torch_python=PY] [--maps=1,2,3,4,8,16] [--channels=64,128,256,512] [--kernels=3,1]
      [--out=bench_ops.md]

``--op=kernels`` (jaxcls/benchmark/kernels.py): the 3x3 stride-1 forward pass and weight
gradient at 56x56x64 to 7x7x512, the forward pass and input gradient of stride-2 convolutions (3x3
and a 1x1 shortcut; the input gradient: XLA's transposed convolution against the forward kernel
once per output phase), both gradients of MobileNetV2's and EfficientNet-B0's 1x1 convolutions
with few input channels (the weight-gradient kernel and XLA's GEMM against the one native kernel
that does both), the 7x7 stem's forward pass and weight gradient, BatchNorm's per-channel sums (forward and backward) and
the stem's 3x3 stride-2 max pool (forward with its winners, and the input gradient),
each XLA (A) against native (B), alternating, medians of ``--rounds``, checked to agree first;
malloc set up as the trainer does. Neither ``--torch_python`` nor the map/channel options apply.

``--op=conv`` (jaxcls/benchmark/conv_maps.py): 3x3 convolutions at ``--channels`` (default 64-512)
and 1x1 at 1024-2048 (``--kernels`` picks the kinds), map sizes ``--maps`` (default 1-16), forward
and forward + both gradients, XLA's convolution (before) against what the zoo runs now (the patches
GEMM on tiny maps), alternating in one process, checked to agree first. It shows XLA:CPU's
small-map cliff and its fix.

``--op=depthwise``:

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

from jaxcls.benchmark import conv_maps, kernels, ops  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "bench_ops"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--batch", type=cli.positive_int, default=32)
    p.add_argument("--rounds", type=cli.positive_int, default=3)
    p.add_argument("--torch_python", type=cli.executable, default="")
    p.add_argument("--out", type=cli.output_file, default="bench_ops.md")
    p.add_argument("--op", choices=("depthwise", "conv", "kernels"), default="depthwise")
    p.add_argument("--maps", type=cli.int_list, default=",".join(map(str, conv_maps.MAP_SIZES)))
    p.add_argument(
        "--channels", type=cli.int_list, default=",".join(map(str, conv_maps.GRID_3X3_CHANNELS))
    )
    p.add_argument("--kernels", type=cli.int_list, default="3,1")
    args = p.parse_args(argv)
    if min(args.channels) < 1:
        p.error(
            f"--channels takes positive channel counts, got {','.join(map(str, args.channels))}"
        )
    if not set(args.kernels) <= {1, 3}:
        p.error(
            f"--kernels takes 1 and/or 3 (kernel sizes), got {','.join(map(str, args.kernels))}"
        )
    if args.op == "kernels":
        return kernels.run(batch=args.batch, rounds=args.rounds, out=args.out)
    if args.op == "conv":
        return conv_maps.run(
            batch=args.batch,
            rounds=args.rounds,
            torch_python=args.torch_python,
            out=args.out,
            map_sizes=tuple(args.maps),
            channels=tuple(args.channels),
            kernels=tuple(args.kernels),
        )
    return ops.run(
        batch=args.batch, rounds=args.rounds, torch_python=args.torch_python, out=args.out
    )


if __name__ == "__main__":
    sys.exit(main())
