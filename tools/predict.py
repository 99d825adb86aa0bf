r"""Runs a checkpoint on image files: top-k class names with probabilities.

  python tools/predict.py --checkpoint=DIR IMAGE... [--top_k=5] [--json] [--batch_size=32]

DIR is a training workdir (its best checkpoint), a ``checkpoints`` folder or step folder, or the
output of tools/convert_weights.py. Images are decoded and preprocessed exactly as the checkpoint's
evaluation was (the eval pipeline saved in its meta). A 1000-class head whose class names are plain
indices (converted ImageNet weights) is labelled with the ImageNet class names. An unreadable image
is reported and skipped; the exit code is 1 if any was.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.explain import predict  # noqa: E402
from jaxcls.trainer.checkpoint import CheckpointError  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "predict"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top_k", type=cli.positive_int, default=5)
    p.add_argument("--batch_size", type=cli.positive_int, default=32)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    try:
        return predict.print_predictions(
            args.checkpoint,
            args.images,
            top_k=args.top_k,
            batch_size=args.batch_size,
            as_json=args.json,
        )
    except (ValueError, CheckpointError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
