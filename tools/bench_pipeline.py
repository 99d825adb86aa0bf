r"""Benchmarks the training input pipeline: images/sec with 0, 1 and 2 grain workers, beside
torchvision's ImageFolder + DataLoader doing the same work on the same files.

  python tools/bench_pipeline.py DATA_DIR [--workers=0,1,2] [--batches=20] [--size=224]
      [--rounds=1] [--out=bench_pipeline.md] [--torch_python=/path/to/python-with-torchvision]
  python tools/bench_pipeline.py --synthetic=800 [--photo_size=1024x768] /tmp/bench_data
      # make a photo-like folder first (500x375 by default)

Work per image, both sides: decode JPEG/PNG -> random resized crop to SIZE -> horizontal flip ->
normalise with the ImageNet mean/std -> float32; batches of 64. The first ``--warmup`` batches of
each configuration are not timed (worker start-up, and the batches all threads and workers made
at once before the first came out). Make the folder hold more than (warmup + batches) x 64 images
so no epoch ends inside the timed window. Every file is read once before anything is timed, so
that both sides find them in the OS page cache (skipped, and said, when they come to more than
half the free memory). torchvision runs in ``--torch_python`` (default: this
interpreter) when torch and torchvision import there; otherwise its rows say why they are missing.
Prints a table (and writes it as Markdown to --out) with the ratio jaxcls / torchvision per worker
count, and the best worker count of each side against the other's. With ``--rounds=N`` every
measurement is repeated N times, the two sides alternating, and the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import pipeline  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "bench_pipeline"


def photo_size(text: str) -> tuple[int, int]:
    """An argparse type: 'WIDTHxHEIGHT', both positive, e.g. '1024x768'."""
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1024x768, got {text!r}")
    return cli.positive_int(parts[0]), cli.positive_int(parts[1])


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("data_dir")
    p.add_argument(
        "--synthetic",
        type=cli.non_negative_int,
        default=0,
        help="first write N synthetic JPEGs into DATA_DIR",
    )
    p.add_argument(
        "--photo_size",
        type=photo_size,
        default="500x375",
        help="WIDTHxHEIGHT of the --synthetic JPEGs (every third one is portrait)",
    )
    p.add_argument("--rounds", type=cli.positive_int, default=1)
    p.add_argument("--workers", type=cli.int_list, default="0,1,2")
    p.add_argument("--batches", type=cli.positive_int, default=20)
    p.add_argument(
        "--warmup",
        type=cli.non_negative_int,
        default=8,
        help="batches read before the clock starts (more than any side has in flight)",
    )
    p.add_argument("--batch_size", type=cli.positive_int, default=64)
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--torch_python", type=cli.executable, default=sys.executable)
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--out", type=cli.output_file, default="bench_pipeline.md")
    p.add_argument(
        "--array_record",
        default="",
        help="jaxcls reads this tools/to_array_record.py folder (packed from DATA_DIR) instead",
    )
    args = p.parse_args(argv)
    try:
        return pipeline.run(
            args.data_dir,
            synthetic=args.synthetic,
            photo_size=args.photo_size,
            rounds=args.rounds,
            workers=args.workers,
            batches=args.batches,
            warmup=args.warmup,
            batch_size=args.batch_size,
            size=args.size,
            torch_python=args.torch_python,
            no_torch=args.no_torch,
            out=args.out,
            array_record=args.array_record,
        )
    # Not a folder (UsageError), not a class-per-folder dataset (SourceError), fewer images than
    # a batch (the pipeline's ValueError), or a --synthetic folder that cannot be written.
    except (ValueError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
