"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/, written by tools/make_weight_fixtures.py with timm 1.0.31,
torchvision 0.29.1 and keras 3.15.1) hold a randomly initialised reference model's weights (a
safetensors state dict, or a Keras legacy .h5), an input batch and the reference logits. Models
that cannot be shrunk (Inception-v3) are *synthetic* cases: their weights are a deterministic
function of each tensor's name and shape (``synthetic_weights`` in the fixture tool), so only the
manifest of names and shapes is stored. Criterion (issue 4): max|dlogits| <= 1e-4 *
max|reference logits|, fp32.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os

import jax  # noqa: E402
import numpy as np
import pytest
from flax import nnx  # noqa: E402

from jaxcls import models
from jaxcls.weights import convert  # noqa: E402
from jaxcls.weights.readers import read_weights  # noqa: E402
from tools.make_weight_fixtures import synthetic_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x):
    """Eval-mode logits; one compilation per model structure (timm and torchvision Inception-v3
    share theirs)."""
    return nnx.merge(graphdef, state)(x, train=False)[0]


def case_weights(case: str) -> dict[str, np.ndarray]:
    """The source tensors of a case, by the names our reader gives them."""
    spec = CASES[case]
    if spec.get("weights") == "synthetic":
        manifest = json.loads(str(np.load(os.path.join(FIXTURES, f"{case}.npz"))["manifest"]))
        return synthetic_weights(manifest, spec["layout"])
    return read_weights(os.path.join(FIXTURES, spec.get("file", f"{case}.safetensors")))


def max_logit_error(case: str, weights: dict[str, np.ndarray], model_name: str | None = None):
    """Converts ``weights`` into the case's model; (max|dlogits|, max|ref|, conversion report)."""
    spec = CASES[case]
    model_name = model_name or spec["model"]
    model = nnx.eval_shape(  # Abstract: every parameter comes from the file.
        lambda: models.create(
            model_name, num_classes=spec["num_classes"], rngs=nnx.Rngs(0), **spec["kwargs"]
        )
    )
    report = convert.load_weights_into(model, model_name, spec["source"], weights)
    golden = np.load(os.path.join(FIXTURES, f"{case}.npz"))
    model.eval()
    logits = _forward(*nnx.split(model), np.asarray(golden["input"], np.float32))
    ref = golden["logits"]
    return float(np.max(np.abs(np.asarray(logits) - ref))), float(np.max(np.abs(ref))), report


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_reference(case):
    weights = case_weights(case)
    err, scale, report = max_logit_error(case, weights)
    assert not report.skipped_head
    allowed = ("*num_batches_tracked", *CASES[case].get("ignored", ()))
    assert all(any(fnmatch.fnmatch(n, p) for p in allowed) for n in report.ignored)
    assert err <= TOLERANCE * scale, f"{case}: max|dlogits| {err:.3g} vs max|ref| {scale:.3g}"


def test_padding_convention_is_visible_in_the_logits():
    """TF-origin weights run with symmetric padding miss the criterion: the check has teeth."""
    case = "timm_tf_efficientnet_b0"  # Into efficientnet_b0: symmetric padding, eps 1e-5.
    err, scale, _ = max_logit_error(case, case_weights(case), model_name="efficientnet_b0")
    assert err > 10 * TOLERANCE * scale
