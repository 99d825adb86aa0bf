"""Regenerates the reference parameter-count table of the model zoo from timm (and Keras).

The numbers recorded in ``tests/models/test_param_counts.py`` come from this tool. It needs the
reference implementations, which are not dependencies of jaxcls; install them in a separate venv::

    python -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31 [keras jax]
    /work/venv-ref/bin/python tools/param_counts.py            # timm table
    /work/venv-ref/bin/python tools/param_counts.py --keras    # + keras.applications trainable

It builds each model with ``pretrained=False`` at 1000 classes (offline) and prints a Python dict
literal ``name: count`` (timm) and, with ``--keras``, the trainable-parameter count of the
corresponding ``keras.applications`` model (Keras also counts BatchNorm moving statistics and its
in-model Normalization layer as non-trainable weights; those are buffers, not parameters, here).
Reference versions used for the recorded table: timm 1.0.31, torch 2.14.1.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import param_counts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", action="store_true", help="also count keras.applications")
    parser.add_argument("--only", nargs="*", help="restrict to these names")
    args = parser.parse_args()
    param_counts.print_tables(keras=args.keras, only=args.only)


if __name__ == "__main__":
    main()
