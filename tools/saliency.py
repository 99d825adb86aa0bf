r"""Saliency maps of a trained model, overlaid on the original images.

  python tools/saliency.py --checkpoint=DIR --method=gradcam IMAGE... --out=DIR \
      [--layer=stage3] [--target=cat] [--save_npy] [--batch_size=16] [--alpha=0.45]

DIR is a training workdir (its best checkpoint is used), its checkpoints/ folder, or one checkpoint
step folder (also a converted checkpoint). Each image is decoded and preprocessed exactly as in
evaluation (the checkpoint's eval pipeline); the map is computed on the model input and mapped back
onto the original photo (resize and padding undone). For each image and method, writes
OUT/<name>_<method>.png (the overlay) and, with --save_npy, OUT/<name>_<method>.npy (the raw map:
the CAM at the feature map's resolution, or the per-channel input attributions) and
OUT/<name>_<method>_original.npy (the [0, 1] map at the original image size). OUT/saliency.json
lists the predicted and explained class of every image.

Methods: gradcam, gradcampp, gradients, smoothgrad, integrated_gradients (comma-separated for
several). --target explains a chosen class (name or index) instead of the predicted one.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.explain import explain_files, saliency  # noqa: E402
from jaxcls.trainer import checkpoint as ckpt_lib  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "saliency"


def main(argv=None) -> int:
    parser = cli.ArgumentParser(TOOL, description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--checkpoint", required=True, help="workdir or checkpoint folder")
    parser.add_argument("--method", default="gradcam", help=f"one or more of {saliency.METHODS}")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--layer", default=None, help="feature for Grad-CAM (default: last stage)")
    parser.add_argument("--target", default=None, help="class name or index (default: predicted)")
    parser.add_argument("--save_npy", action="store_true", help="also save the raw maps")
    parser.add_argument("--batch_size", type=cli.positive_int, default=16)
    parser.add_argument("--alpha", type=cli.fraction, default=0.45, help="overlay opacity")
    parser.add_argument(
        "--samples", type=cli.positive_int, default=25, help="SmoothGrad noisy copies"
    )
    parser.add_argument(
        "--noise", type=cli.non_negative_float, default=0.15, help="SmoothGrad noise level"
    )
    parser.add_argument(
        "--steps", type=cli.positive_int, default=32, help="integrated-gradients steps"
    )
    args = parser.parse_args(argv)
    try:
        return explain_files.explain_and_print(
            args.checkpoint,
            args.images,
            args.out,
            methods=[m for m in args.method.split(",") if m],
            layer=args.layer,
            target=args.target,
            save_npy=args.save_npy,
            batch_size=args.batch_size,
            alpha=args.alpha,
            samples=args.samples,
            noise=args.noise,
            steps=args.steps,
        )
    except (ValueError, ckpt_lib.CheckpointError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)


if __name__ == "__main__":
    sys.exit(main())
