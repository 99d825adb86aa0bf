"""Converted weights reproduce the reference framework's logits (golden fixtures, offline).

The fixtures (tests/weights/fixtures/) are written by tools/make_weight_fixtures.py (timm 1.0.31,
torchvision 0.29.1; Keras 3.15 on the JAX backend through tools/make_keras_fixtures.py) and hold
a randomly initialised, shrunk reference model's weights (a safetensors state dict, or a Keras
legacy .h5 as the keras-applications downloads are; some cases also a Keras 3 ``.weights.h5``),
an input batch and the reference logits. BatchNorm statistics are calibrated on that batch (then
perturbed), so every layer shapes the logits: each case must also *fail* by far on its input
flipped left-right (``TEETH``). Models that cannot be shrunk (Inception-v3) are *synthetic* cases:
their weights are a deterministic function of each tensor's name and shape (``synthetic_weights``
in tools/fixture_common.py), so only the manifest of names and shapes and the calibrated BatchNorm
statistics are stored. Criterion (issue 4): max|dlogits| <= 1e-4 * max|reference logits|, fp32.

Cases that name a pretrained ``tag`` (every Keras case): the model is built with the tag's model
arguments (its conventions: padding, BatchNorm eps) and fed the fixture's raw 0..255 RGB images
through the tag's preprocessing contract (the ``normalize`` op of its eval pipeline), while the
reference logits came from the Keras model given the same images (rescaled and normalised inside
the model, or by ``keras.applications.*.preprocess_input``, BGR for caffe mode). Passing proves the
weights *and* the contract."""

from __future__ import annotations

import fnmatch
import functools
import json
import os

import jax  # noqa: E402
import numpy as np
import pytest
from flax import nnx  # noqa: E402

from input_pipeline import pp
from jaxcls import models
from jaxcls.weights import convert, registry  # noqa: E402
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.readers import read_weights  # noqa: E402
from tools.fixture_common import synthetic_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))
TOLERANCE = 1e-4
# A fixture has teeth when the input flipped left-right misses the criterion by this factor: its
# logits depend on the input's every layer, so a mapping error in an early layer cannot hide.
TEETH = 100
# Source tensors a conversion may leave unused: PyTorch's BatchNorm counters and the statistics of
# Keras' in-model Normalization layer (their values are the tag's preprocessing contract).
UNUSED = ("*num_batches_tracked", "normalization*/*")

# (case, weight file): every case's file (synthetic: none), plus its Keras 3 copy where it has one.
FILES = [
    pytest.param(case, spec.get(key), id=case + suffix)
    for case, spec in sorted(CASES.items())
    for key, suffix in (("file", ""), ("keras3_file", "-keras3"))
    if key == "file" or key in spec
]


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x):
    """Eval-mode logits; one compilation per model structure (timm and torchvision Inception-v3
    share theirs)."""
    return nnx.merge(graphdef, state)(x, train=False)[0]


def contract_input(tag: registry.PretrainedTag, images: np.ndarray) -> np.ndarray:
    """``images`` (uint8 NHWC) through the normalisation of ``tag``'s eval pipeline."""
    pipeline = tag.preprocessing.eval_pipeline()
    normalize = [op for op in pipeline.split("|") if op.startswith("normalize(")]
    assert len(normalize) == 1, pipeline
    fn = pp.parse(normalize[0])
    return np.stack([fn(im, None) for im in images])


def case_weights(case: str, file: str | None = None) -> dict[str, np.ndarray]:
    """The source tensors of a case (its own file unless ``file``), by our reader's names."""
    spec = CASES[case]
    if spec.get("weights") == "synthetic":
        npz = np.load(os.path.join(FIXTURES, f"{case}.npz"))
        manifest = json.loads(str(npz["manifest"]))
        return synthetic_weights(manifest, spec["layout"], npz["statistics"])
    return read_weights(os.path.join(FIXTURES, file or spec.get("file", f"{case}.safetensors")))


def model_input(case: str) -> np.ndarray:
    """The case's model input: the stored batch, or its raw images through the tag's contract."""
    spec = CASES[case]
    x = np.load(os.path.join(FIXTURES, f"{case}.npz"))["input"]
    if "tag" not in spec:
        return np.asarray(x, np.float32)
    assert x.dtype == np.uint8  # Raw images: what the Keras model was given.
    return contract_input(registry.get(spec["tag"]), x)


def abstract_model(name: str, num_classes: int = 10, **kwargs) -> nnx.Module:
    """``name`` built abstractly (``nnx.eval_shape``): a strict conversion fills every leaf, so
    the random initialisation (slow for big models) is skipped."""
    return nnx.eval_shape(
        lambda: models.create(name, num_classes=num_classes, rngs=nnx.Rngs(0), **kwargs)
    )


def convert_case(case: str, weights=None, model_name: str | None = None, **model_kwargs):
    """(model with the case's weights converted into it, conversion report, model input, golden
    logits). ``model_name``/``model_kwargs`` override the case's model (negative tests)."""
    spec = CASES[case]
    tag = registry.get(spec["tag"]) if "tag" in spec else None
    kwargs = {**(tag.model_kwargs if tag else {}), **spec["kwargs"], **model_kwargs}
    model_name = model_name or spec["model"]
    model = abstract_model(model_name, spec["num_classes"], **kwargs)
    weights = case_weights(case) if weights is None else weights
    report = convert.load_weights_into(model, model_name, spec["source"], weights)
    model.eval()
    ref = np.load(os.path.join(FIXTURES, f"{case}.npz"))["logits"]
    return model, report, model_input(case), ref


def relative_error(model, x, ref) -> float:
    """max|dlogits| / max|ref| of ``model`` on ``x``."""
    logits = _forward(*nnx.split(model), x)
    return float(np.max(np.abs(np.asarray(logits) - ref)) / np.max(np.abs(ref)))


def max_logit_error(case: str, weights: dict[str, np.ndarray], model_name: str | None = None):
    """Converts ``weights`` into the case's model; (max|dlogits|, max|ref|, conversion report)."""
    model, report, x, ref = convert_case(case, weights, model_name)
    scale = float(np.max(np.abs(ref)))
    return relative_error(model, x, ref) * scale, scale, report


@pytest.mark.parametrize("case, file", FILES)
def test_logits_match_reference(case, file):
    model, report, x, ref = convert_case(case, case_weights(case, file))
    assert not report.skipped_head
    allowed = (*UNUSED, *CASES[case].get("ignored", ()))
    assert all(any(fnmatch.fnmatch(n, p) for p in allowed) for n in report.ignored)
    err = relative_error(model, x, ref)
    assert err <= TOLERANCE, f"{case}: max|dlogits| / max|ref| = {err:.3g}"
    if file == CASES[case].get("file"):  # Once per case (not again for its Keras 3 copy).
        flipped = relative_error(model, x[:, :, ::-1], ref)
        assert flipped > TEETH * TOLERANCE, f"{case}: flipped input, only {flipped:.3g}"


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
    images = np.load(os.path.join(FIXTURES, "keras_efficientnetv2_s.npz"))["input"]
    wrong = contract_input(registry.get("keras:EfficientNetV2B0"), images)
    assert relative_error(model, wrong, ref) > 10 * TOLERANCE


def test_keras_file_into_another_family_member_fails_listing_names():
    """An EfficientNetV2 file converted into EfficientNet-B0 is refused, naming both sides."""
    spec = CASES["keras_efficientnetv2_b0"]
    model = abstract_model("EfficientNetB0", **spec["kwargs"])
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
