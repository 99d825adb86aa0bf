"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/, written by tools/make_weight_fixtures.py with timm 1.0.31,
torchvision 0.29.1 and, through tools/make_keras_fixtures.py, keras 3.15) hold a randomly
initialised reference model's weights, an input batch and the reference logits. Criterion
(issue 4): max|dlogits| <= 1e-4 * max|reference logits|, fp32.

Keras cases name a pretrained tag: the model is built with the tag's model arguments (its
conventions: padding, BatchNorm eps) and fed the fixture's raw 0..255 images through the tag's
preprocessing contract (the ``normalize`` op of its eval pipeline), while the reference logits
came from the Keras model given the same raw images (rescaled and normalised inside the model, or
by ``keras.applications.*.preprocess_input``). Passing proves the weights *and* the contract.
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
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.readers import read_weights  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4


def contract_input(tag: registry.PretrainedTag, images: np.ndarray) -> np.ndarray:
    """``images`` (uint8 NHWC) through the normalisation of ``tag``'s eval pipeline."""
    pipeline = tag.preprocessing.eval_pipeline()
    normalize = [op for op in pipeline.split("|") if op.startswith("normalize(")]
    assert len(normalize) == 1, pipeline
    fn = ops.parse(normalize[0])
    return np.stack([fn(im, None) for im in images])


def convert_case(case: str, **model_kwargs):
    """(model with the case's file converted into it, conversion report, model input, golden)."""
    spec = CASES[case]
    tag = registry.get(spec["tag"]) if "tag" in spec else None
    kwargs = {**(tag.model_kwargs if tag else {}), **spec["kwargs"], **model_kwargs}
    model = nnx.eval_shape(  # Abstract: the conversion fills every leaf, no random init (slow).
        lambda: models.create(
            spec["model"], num_classes=spec["num_classes"], rngs=nnx.Rngs(0), **kwargs
        )
    )
    weights = read_weights(os.path.join(FIXTURES, spec.get("file", f"{case}.safetensors")))
    report = convert.load_weights_into(model, spec["model"], spec["source"], weights)
    golden = np.load(os.path.join(FIXTURES, spec.get("golden", f"{case}.npz")))
    x = golden["input"]
    if tag is not None:
        assert x.dtype == np.uint8  # Raw images: what the Keras model was given.
        x = contract_input(tag, x)
    model.eval()
    return model, report, x, golden["logits"]


def relative_error(model, x, ref) -> float:
    logits, _ = jax.jit(lambda x: model(x, train=False))(x)
    return float(np.max(np.abs(np.asarray(logits) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_reference(case):
    model, report, x, ref = convert_case(case)
    assert not report.skipped_head
    unused = {"num_batches_tracked", "normalization/mean", "normalization/variance",
              "normalization/count"}  # fmt: skip
    assert all(n.rsplit(".", 1)[-1] in unused or n in unused for n in report.ignored)
    err = relative_error(model, x, ref)
    assert err <= TOLERANCE, f"{case}: max|dlogits| / max|ref| = {err:.3g}"


def test_padding_convention_is_visible_in_the_logits():
    """TF-origin weights run with symmetric padding miss the criterion: the check has teeth."""
    model, _, x, ref = convert_case(
        "timm_tf_efficientnet_b0", padding="symmetric", bn_eps=1e-5
    )  # PyTorch conventions.
    assert relative_error(model, x, ref) > 10 * TOLERANCE


def test_keras_mobilenetv2_needs_the_tags_conventions():
    """The MobileNetV2 alias alone (mobilenetv2_100: symmetric padding, eps 1e-5) misses Keras'
    logits; the keras:MobileNetV2 tag's model arguments ('SAME', eps 1e-3) are what reproduce
    them (test_logits_match_reference)."""
    defaults = models.model_info("MobileNetV2").defaults
    assert defaults["padding"] == "symmetric" and defaults["bn_eps"] == 1e-5
    for wrong in ({"padding": "symmetric"}, {"bn_eps": 1e-5}):
        model, _, x, ref = convert_case("keras_mobilenetv2", **wrong)
        assert relative_error(model, x, ref) > 10 * TOLERANCE, wrong


def test_keras_contract_is_what_the_logits_need():
    """Feeding EfficientNetV2-S the ImageNet normalisation instead of its contract (x/128 - 1)
    misses the criterion: the contract, not just the weights, is under test."""
    model, _, _, ref = convert_case("keras_efficientnetv2_s")
    golden = np.load(os.path.join(FIXTURES, CASES["keras_efficientnetv2_s"]["golden"]))
    wrong = contract_input(registry.get("keras:EfficientNetV2B0"), golden["input"])
    assert relative_error(model, wrong, ref) > 10 * TOLERANCE


def test_keras_file_into_another_family_member_fails_listing_names():
    """An EfficientNetV2 file converted into EfficientNet-B0 is refused, naming both sides."""
    spec = CASES["keras_efficientnetv2_b0"]
    model = nnx.eval_shape(
        lambda: models.create("EfficientNetB0", num_classes=10, rngs=nnx.Rngs(0), **spec["kwargs"])
    )
    weights = read_weights(os.path.join(FIXTURES, spec["file"]))
    with pytest.raises(WeightsError) as e:
        convert.load_weights_into(model, "EfficientNetB0", "keras", weights)
    msg = str(e.value)
    assert "model parameters with no source tensor" in msg and "source tensors left unused" in msg
    assert "stages.0.0.conv_dw.kernel\n" in msg  # B0's first depthwise conv: V2 has none.
    # Same Keras name, another layer: V2's fused 3x3 conv for B0's 1x1 projection.
    assert (
        "stages.0.0.conv_pw.kernel (1, 1, 8, 8) <- block1a_project_conv/kernel (3, 3, 8, 8)" in msg
    )
