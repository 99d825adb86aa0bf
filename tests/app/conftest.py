"""A tiny trained-looking workdir for the app tests: a checkpoint and its results.json."""

from __future__ import annotations

import json
import os

import pytest

from tests.export.conftest import FAMILIES, write_tiny

MAX_BYTES = 200_000  # the app's byte limit in these tests (noise_png() is larger)
TEST_METRICS = {"accuracy": 0.75, "f1_macro": 0.7}


@pytest.fixture(scope="session")
def app_workdir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("app_workdir"))
    kwargs, size = FAMILIES["cnn"]
    write_tiny(out, "cnn", dict(kwargs), size)
    with open(os.path.join(out, "results.json"), "w") as f:
        # As the trainer writes it: scalars beside per-class tables and the confusion matrix.
        test = {**TEST_METRICS, "per_class": {"a": {"recall": 1.0}}, "confusion_matrix": [[1]]}
        json.dump({"model": "cnn", "splits": {"test": test}}, f)
    return out
