r"""Exports a checkpoint to a deployable format, with its preprocessing and a parity check.

  python tools/export.py --checkpoint=DIR --format=stablehlo|onnx|savedmodel|tflite --out=PATH \
      [--quantize=int8 --eval_data=DIR] [--images=a.jpg,b.png]

DIR is a training workdir (its best checkpoint), a ``checkpoints`` or step folder, or the output
of tools/convert_weights.py. PATH is a file (a folder for savedmodel); the preprocessing JSON
(classes, input size, resize/crop, mean/std or value range, the pipeline string) is written
beside it (``model.onnx`` -> ``model.onnx.json``). The artefact is loaded back through its own
runtime (jax.export, onnxruntime, TensorFlow, LiteRT) and its logits are compared with jaxcls's
on real photos (scikit-image's, or --images): the export fails (exit 1, artefact removed) if a
top-1 class differs. --quantize=int8 (tflite only: dynamic-range int8 weights) needs
--eval_data, a folder with one sub-folder per class, on which the accuracy of jaxcls and of the
artefact are reported.
A user error or an unsupported combination prints one line and exits with code 2.
See docs/deploy.md for loading each format.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.export.formats import FORMATS, ExportError, check_format  # noqa: E402
from jaxcls.trainer.checkpoint import CheckpointError  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "export"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--checkpoint", required=True, help="workdir, checkpoint folder or converted")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="artefact path (a folder for savedmodel)")
    p.add_argument("--quantize", default="", choices=["", "int8"], help="tflite only")
    p.add_argument("--eval_data", default="", help="folder of class sub-folders (accuracy)")
    p.add_argument("--images", default="", help="comma-separated parity photos")
    args = p.parse_args(argv)
    from jaxcls.export import exporter

    try:  # the flags' combination before any loading
        check_format(args.format, args.quantize)
        exporter.check_output(args.format, args.out)
        images = [s for s in args.images.split(",") if s] or None
        for path in images or ():
            if not os.path.isfile(path):
                raise ExportError(f"--images: {path}: no such file")
        exporter.export(
            args.checkpoint,
            args.format,
            args.out,
            quantize=args.quantize,
            eval_data=args.eval_data,
            images=images,
            log=lambda s: print(s, flush=True),
        )
    except exporter.ParityError as e:
        print(f"{TOOL}: error: {cli.one_line(e)}", file=sys.stderr, flush=True)
        return 1
    except (ValueError, CheckpointError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
