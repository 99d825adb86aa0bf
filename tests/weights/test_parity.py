"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/, written by tools/make_weight_fixtures.py with timm 1.0.31
and torchvision 0.29.1) hold a randomly initialised reference model's state dict, an input batch
and the reference logits. Criterion (issue 4): max|dlogits| <= 1e-4 * max|reference logits|, fp32.
"""

from __future__ import annotations

import json
import os

import jax  # noqa: E402
import numpy as np
import pytest
from flax import nnx  # noqa: E402

from jaxcls import models
from jaxcls.weights import convert  # noqa: E402
from jaxcls.weights.readers import read_weights  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_reference(case):
    spec = CASES[case]
    model = models.create(
        spec["model"], num_classes=spec["num_classes"], rngs=nnx.Rngs(0), **spec["kwargs"]
    )
    weights = read_weights(os.path.join(FIXTURES, f"{case}.safetensors"))
    report = convert.load_weights_into(model, spec["model"], spec["source"], weights)
    assert not report.skipped_head
    assert set(report.ignored) <= {n for n in weights if n.endswith("num_batches_tracked")}
    golden = np.load(os.path.join(FIXTURES, f"{case}.npz"))
    model.eval()
    logits, _ = jax.jit(lambda x: model(x, train=False))(golden["input"])
    ref = golden["logits"]
    err = float(np.max(np.abs(np.asarray(logits) - ref)))
    scale = float(np.max(np.abs(ref)))
    assert err <= TOLERANCE * scale, f"{case}: max|dlogits| {err:.3g} vs max|ref| {scale:.3g}"


def test_padding_convention_is_visible_in_the_logits():
    """TF-origin weights run with symmetric padding miss the criterion: the check has teeth."""
    spec = CASES["timm_tf_efficientnet_b0"]
    model = models.create(
        "efficientnet_b0", num_classes=spec["num_classes"], rngs=nnx.Rngs(0), **spec["kwargs"]
    )  # PyTorch conventions: symmetric padding, eps 1e-5.
    weights = read_weights(os.path.join(FIXTURES, "timm_tf_efficientnet_b0.safetensors"))
    convert.load_weights_into(model, "efficientnet_b0", "timm", weights)
    golden = np.load(os.path.join(FIXTURES, "timm_tf_efficientnet_b0.npz"))
    model.eval()
    logits, _ = model(golden["input"], train=False)
    ref = golden["logits"]
    assert np.max(np.abs(np.asarray(logits) - ref)) > 10 * TOLERANCE * np.max(np.abs(ref))
