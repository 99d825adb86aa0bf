"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/) are written by tools/make_weight_fixtures.py (timm 1.0.31,
torchvision 0.29.1) and tools/make_keras_fixtures.py (keras 3.15.1) and hold a randomly
initialised reference model's weights (a safetensors state dict, or a Keras legacy .h5 as the
keras-applications downloads are; some cases also a Keras 3 ``.weights.h5``), an input batch and
the reference logits. Models that cannot be shrunk (Inception-v3) are *synthetic* cases: their
weights are a deterministic function of each tensor's name and shape (``synthetic_weights`` in the
fixture tool), so only the manifest of names and shapes is stored.

Cases with a ``pretrained`` tag store a uint8 RGB ``image`` batch: the reference saw it through its
framework's own preprocessing, our model sees it through the tag's contract (the pipeline's
``normalize`` op, RGB), so a wrong mean/std or channel order in the registry fails here too.
Criterion (issue 4): max|dlogits| <= 1e-4 * max|reference logits|, fp32.
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

from input_pipeline import ops
from jaxcls import models
from jaxcls.weights import convert, registry  # noqa: E402
from jaxcls.weights.readers import read_weights  # noqa: E402
from tools.make_weight_fixtures import synthetic_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4

# (case, weight file): every case's file (None: synthetic), plus the Keras 3 copy where there is one.
FILES = [
    pytest.param(case, spec.get(key, f"{case}.safetensors"), id=case + suffix)
    for case, spec in sorted(CASES.items())
    for key, suffix in (("file", ""), ("keras3_file", "-keras3"))
    if key == "file" or key in spec
]


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x):
    """Eval-mode logits; one compilation per model structure (timm and torchvision Inception-v3
    share theirs)."""
    return nnx.merge(graphdef, state)(x, train=False)[0]


def case_weights(case: str, file: str | None = None) -> dict[str, np.ndarray]:
    """The source tensors of a case (its own file unless ``file``), by our reader's names."""
    spec = CASES[case]
    if spec.get("weights") == "synthetic":
        manifest = json.loads(str(np.load(os.path.join(FIXTURES, f"{case}.npz"))["manifest"]))
        return synthetic_weights(manifest, spec["layout"])
    return read_weights(os.path.join(FIXTURES, file or spec.get("file", f"{case}.safetensors")))


def model_input(spec: dict, golden) -> np.ndarray:
    """The golden input, or the golden uint8 RGB images through the tag's normalisation."""
    if "pretrained" not in spec:
        return np.asarray(golden["input"], np.float32)
    contract = registry.get(spec["pretrained"]).preprocessing.eval_pipeline()
    normalize = contract.rsplit("|", 1)[-1]
    assert normalize.startswith("normalize("), contract
    pp = ops.parse(normalize)
    return np.stack([pp(image) for image in golden["image"]])


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
    logits = _forward(*nnx.split(model), model_input(spec, golden))
    ref = golden["logits"]
    return float(np.max(np.abs(np.asarray(logits) - ref))), float(np.max(np.abs(ref))), report


@pytest.mark.parametrize("case, file", FILES)
def test_logits_match_reference(case, file):
    err, scale, report = max_logit_error(case, case_weights(case, file))
    assert not report.skipped_head
    allowed = ("*num_batches_tracked", *CASES[case].get("ignored", ()))
    assert all(any(fnmatch.fnmatch(n, p) for p in allowed) for n in report.ignored)
    assert err <= TOLERANCE * scale, f"{case}: max|dlogits| {err:.3g} vs max|ref| {scale:.3g}"


def test_padding_convention_is_visible_in_the_logits():
    """TF-origin weights run with symmetric padding miss the criterion: the check has teeth."""
    case = "timm_tf_efficientnet_b0"  # Into efficientnet_b0: symmetric padding, eps 1e-5.
    err, scale, _ = max_logit_error(case, case_weights(case), model_name="efficientnet_b0")
    assert err > 10 * TOLERANCE * scale
