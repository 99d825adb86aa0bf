r"""Benchmarks the training input pipeline: images/sec with 0, 1 and 2 grain workers, beside
torchvision's ImageFolder + DataLoader doing the same work on the same files.

  python tools/bench_pipeline.py DATA_DIR [--workers=0,1,2] [--batches=20] [--size=224]
      [--out=bench_pipeline.md] [--torch_python=/path/to/python-with-torchvision]
  python tools/bench_pipeline.py --synthetic=800 /tmp/bench_data      # make a photo-like folder first

Work per image, both sides: decode JPEG/PNG -> random resized crop to SIZE -> horizontal flip ->
normalise with the ImageNet mean/std -> float32; batches of 64. The first batch of each
configuration is not timed (worker start-up). torchvision runs in ``--torch_python`` (default: this
interpreter) when torch and torchvision import there; otherwise its rows say why they are missing.
Prints a table (and writes it as Markdown to --out) with the ratio jaxcls / torchvision per worker
count.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import common, pipeline  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data_dir")
    p.add_argument(
        "--synthetic", type=int, default=0, help="first write N synthetic JPEGs into DATA_DIR"
    )
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--torch_python", default=sys.executable)
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--out", default="bench_pipeline.md")
    args = p.parse_args(argv)
    try:
        return pipeline.run(
            args.data_dir,
            synthetic=args.synthetic,
            workers=(int(x) for x in args.workers.split(",")),
            batches=args.batches,
            batch_size=args.batch_size,
            size=args.size,
            torch_python=args.torch_python,
            no_torch=args.no_torch,
            out=args.out,
        )
    except common.UsageError as e:
        print(f"bench_pipeline: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
