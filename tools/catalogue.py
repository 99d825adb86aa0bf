r"""Catalogues a class-per-folder image dataset: one row per file, a summary, and plots.

  python tools/catalogue.py DATA_DIR --out=DIR [--class_map=animals10] [--threads=2]

Writes DIR/catalogue.csv (path, class, format, mode, channels, width, height, bytes, status:
ok / corrupt / truncated / not an image / empty / too large, reason), DIR/summary.json (class counts,
format x channels table, most common widths and heights, bad files), DIR/class_counts.png and
DIR/sizes.png, and prints the summary. The trainer runs the same decode check on folder datasets and
skips (and lists) the files this tool marks as bad.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline import catalogue_report  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "catalogue"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--class_map", default=None, help="'animals10' (Italian -> English folder names)"
    )
    p.add_argument("--threads", type=cli.non_negative_int, default=2)
    args = p.parse_args(argv)
    try:
        return catalogue_report.write_report(
            args.data_dir, args.out, class_map=args.class_map, threads=args.threads
        )
    except (catalogue_report.UsageError, *cli.FILE_ERRORS) as e:  # e.g. --out is a file
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
