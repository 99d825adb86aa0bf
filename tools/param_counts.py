"""Regenerates the reference parameter-count table of the model zoo from timm (and Keras).

The numbers recorded in ``tests/models/test_param_counts.py`` come from this tool. It needs the
reference implementations, which are not dependencies of jaxcls; install them in a separate venv::

    python -m venv ref-venv && REF_PYTHON=ref-venv/bin/python
    "$REF_PYTHON" -m pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31 [keras jax]
    "$REF_PYTHON" tools/param_counts.py            # timm table
    "$REF_PYTHON" tools/param_counts.py --keras    # + keras.applications trainable

It builds each model with ``pretrained=False`` at 1000 classes (offline) and prints a Python dict
literal ``name: count`` (timm) and, with ``--keras``, the trainable-parameter count of the
corresponding ``keras.applications`` model (Keras also counts BatchNorm moving statistics and its
in-model Normalization layer as non-trainable weights; those are buffers, not parameters, here).
Reference versions used for the recorded table: timm 1.0.31, torch 2.14.1.
"""

from __future__ import annotations

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import param_counts  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "param_counts"


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv=None) -> int:
    parser = cli.ArgumentParser(TOOL, description=__doc__.splitlines()[0])
    parser.add_argument("--keras", action="store_true", help="also count keras.applications")
    parser.add_argument("--only", nargs="*", help="restrict to these names")
    args = parser.parse_args(argv)
    known = [*param_counts.TIMM_NAMES, *(param_counts.KERAS_NAMES if args.keras else ())]
    unknown = [n for n in args.only or () if n not in known]
    if unknown:
        return cli.fail(
            TOOL,
            f"--only: no reference model named {', '.join(map(repr, unknown))}"
            f"{'' if args.keras else ' (Keras names need --keras)'}; known: {', '.join(known)}",
        )
    # Before printing anything: the reference packages this tool runs on (a separate venv).
    missing = [m for m in ("torch", "timm", *(["keras"] if args.keras else [])) if not _has(m)]
    if missing:
        return cli.fail(
            TOOL,
            f"{', '.join(missing)} not installed in {sys.executable}: run this tool with a Python "
            "that has the reference packages (see its docstring)",
        )
    param_counts.print_tables(keras=args.keras, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
