r"""Writes a grid of raw vs processed images: what a pipeline string does to a dataset.

  python tools/preview.py DATA_DIR --pipeline='decode|resize_pad(224)|clahe(2.0, 8)|blur(1.0)' \
      --out=grid.png [--n=16] [--seed=0] [--class_map=animals10]

DATA_DIR is a class-per-folder directory (or a dataset spec: 'folder:DIR', 'csv:FILE',
'tfds:NAME', 'digits'). N examples drawn with SEED are shown decoded next to the pipeline's output,
with class, sizes and value range; random ops (augmentations) are seeded too, so the same command
draws the same grid. A bad pipeline string, a missing folder or an unwritable --out is one line
and exit code 2.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline import preview  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "preview"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("data_dir")
    p.add_argument("--pipeline", required=True, help="e.g. 'decode|resize_pad(224)|clahe'")
    p.add_argument("--out", required=True, type=cli.output_file, help="PNG file to write")
    p.add_argument("--n", type=cli.positive_int, default=16, help="examples to show")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--class_map", default=None, help="e.g. 'animals10'")
    args = p.parse_args(argv)
    try:
        result = preview.preview(
            args.data_dir,
            args.pipeline,
            args.out,
            n=args.n,
            seed=args.seed,
            class_map=args.class_map,
        )
    except (ValueError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)
    print(f"wrote {result['out']}: {len(result['examples'])} examples, raw vs {args.pipeline!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
