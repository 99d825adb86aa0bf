r"""Writes a preprocessed copy of a class-per-folder dataset, plus the copy's catalogue.

  python tools/preprocess.py SRC_DIR --out=DST_DIR [--size=224] [--resize=pad|stretch|crop]
      [--quality=90] [--format=jpeg|png] [--class_map=animals10] [--pipeline='decode|...']

Every readable image is decoded as training does (EXIF orientation applied, alpha composited on
white, CMYK/16-bit converted), resized (aspect kept and padded by default), and saved as an RGB file
under DST_DIR/<class>/ with the same base name. Unreadable files are skipped and listed in
DST_DIR/skipped.csv. DST_DIR/.catalogue/ (hidden, so the copy's class folders stay the only folders) then holds catalogue.csv, summary.json and plots of the
copy. Train on the copy with ``--config.dataset=folder:DST_DIR`` to compare with the raw data.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline import preprocess  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "preprocess"


def _quality(text: str) -> int:
    value = cli.positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {text!r}")
    return value


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--resize", default="pad", help="pad (keep aspect, pad), stretch, or crop")
    p.add_argument(
        "--pipeline",
        default=None,
        help="custom uint8 pipeline, e.g. 'decode|resize_pad(224)|clahe(2.0, 8)'",
    )
    p.add_argument("--format", default="jpeg", choices=["jpeg", "png"])
    p.add_argument("--quality", type=_quality, default=90, help="JPEG quality, 1-100")
    p.add_argument("--class_map", default=None)
    p.add_argument("--threads", type=cli.non_negative_int, default=2)
    args = p.parse_args(argv)
    try:
        return preprocess.preprocess(
            args.src,
            args.out,
            size=args.size,
            resize=args.resize,
            pipeline=args.pipeline,
            fmt=args.format,
            quality=args.quality,
            class_map=args.class_map,
            threads=args.threads,
        )
    except (preprocess.UsageError, *cli.FILE_ERRORS) as e:  # e.g. --out is a file
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
