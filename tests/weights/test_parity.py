"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/, written by tools/make_weight_fixtures.py with timm 1.0.31
and torchvision 0.29.1, and tools/make_keras_fixtures.py with Keras 3.15) hold a randomly
initialised reference model's weights, an input batch and the reference logits. Criterion
(issue 4): max|dlogits| <= 1e-4 * max|reference logits|, fp32.

Keras cases store the weights as the keras-applications downloads do (legacy ``.h5``; some also as
Keras 3 ``.weights.h5``) and a uint8 RGB ``image`` batch: the reference saw it through Keras'
``preprocess_input``, our model sees it through the pretrained tag's contract (the pipeline's
``normalize`` op, RGB), so a wrong mean/std or channel order in the registry fails here too.
"""

from __future__ import annotations

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

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4


# (case, weight file): every case's file, plus the Keras 3 copy where a case has one.
FILES = [
    pytest.param(case, spec.get(key, f"{case}.safetensors"), id=case + suffix)
    for case, spec in sorted(CASES.items())
    for key, suffix in (("file", ""), ("keras3_file", "-keras3"))
    if key == "file" or key in spec
]


def model_input(spec: dict, golden) -> np.ndarray:
    """The golden input, or the golden uint8 RGB images through the tag's normalisation."""
    if "pretrained" not in spec:
        return golden["input"]
    contract = registry.get(spec["pretrained"]).preprocessing.eval_pipeline()
    normalize = contract.rsplit("|", 1)[-1]
    assert normalize.startswith("normalize("), contract
    pp = ops.parse(normalize)
    return np.stack([pp(image) for image in golden["image"]])


@pytest.mark.parametrize("case, file", FILES)
def test_logits_match_reference(case, file):
    spec = CASES[case]
    # Abstract: no random init to overwrite; running it proves the strict load filled every leaf.
    model = nnx.eval_shape(
        lambda: models.create(
            spec["model"], num_classes=spec["num_classes"], rngs=nnx.Rngs(0), **spec["kwargs"]
        )
    )
    weights = read_weights(os.path.join(FIXTURES, file))
    report = convert.load_weights_into(model, spec["model"], spec["source"], weights)
    assert not report.skipped_head
    assert set(report.ignored) <= {n for n in weights if n.endswith("num_batches_tracked")}
    golden = np.load(os.path.join(FIXTURES, f"{case}.npz"))
    model.eval()
    logits, _ = jax.jit(lambda x: model(x, train=False))(model_input(spec, golden))
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
