"""A converted file is fed as its origin feeds it: a timm file converted without a tag gets timm's
default eval transform for the architecture, and tools/predict.py then gives timm's own
probabilities on a real photo (fixtures/contract_timm_b0.npz, written by
tools/make_contract_fixture.py from timm 1.0.31: efficientnet_b0's default config, Resize(256,
bicubic) -> CenterCrop(224) -> ImageNet mean/std, on scikit-image's chelsea)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from input_pipeline import pipeline as input_pipeline
from jaxcls.explain import inference
from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.weights import export_checkpoint
from tools import convert_weights, predict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SMALL = '{"channel_multiplier": 0.1, "depth_multiplier": 0.34}'  # the parity fixture's model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("contract") / "b0")
    rc = convert_weights.main(
        [
            "--model=efficientnet_b0",
            "--source=timm",
            f"--input={os.path.join(FIXTURES, 'timm_efficientnet_b0.safetensors')}",
            f"--output={out}",
            "--num_classes=10",
            f"--model_kwargs={SMALL}",
        ]
    )
    assert rc == 0
    return out


def test_untagged_timm_file_predicts_timm_probabilities(converted, tmp_path, capsys):
    golden = np.load(os.path.join(FIXTURES, "contract_timm_b0.npz"))
    record = json.loads(str(golden["record"]))
    assert record["default_tag"] == "efficientnet_b0.ra_in1k"
    photo = tmp_path / "chelsea.png"
    photo.write_bytes(golden["photo_png"].tobytes())
    capsys.readouterr()
    assert predict.main([f"--checkpoint={converted}", str(photo), "--top_k=10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preprocessing"] == (
        "decode|resize_small(256, 'bicubic', backend='pil')|center_crop(224, offset='round')|"
        "normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))"
    )
    probs = np.zeros(10)
    for t in out["predictions"][0]["top_k"]:
        probs[t["index"]] = t["probability"]
    np.testing.assert_allclose(probs, golden["probs"], atol=1e-4)
    assert golden["probs"].max() > 0.5  # a confident model: the comparison has something to see


def test_the_contract_is_what_matches(converted):
    """The same model fed our faster OpenCV resize, or the trainer's generic pipeline, misses
    timm's probabilities by far more than the tolerance: the exact contract is what matters."""
    golden = np.load(os.path.join(FIXTURES, "contract_timm_b0.npz"))
    loaded = inference.load_for_inference(
        converted, build=lambda m: nnx.eval_shape(lambda: inference.build_from_meta(m))
    )
    raw = golden["photo_png"].tobytes()
    x = np.stack(
        [
            input_pipeline.eval_transform(pipeline, (224, 224))(raw)
            for pipeline in (
                "decode|resize_small(256, 'bicubic')|center_crop(224)|normalize('imagenet')",
                "decode|resize(224)|value_range(-1, 1)",
            )
        ]
    )

    @jax.jit
    def forward(params, rest, x):
        model = nnx.merge(loaded.graphdef, params, rest, copy=True)
        return jax.nn.softmax(model(x, train=False)[0], axis=-1)

    misses = np.abs(np.asarray(forward(loaded.params, loaded.rest, x)) - golden["probs"])
    misses = misses.max(axis=1)
    assert misses.min() > 1e-3, misses


def test_meta_records_where_the_preprocessing_comes_from(converted):
    meta = ckpt_lib.read_meta(ckpt_lib.find_step_dir(converted))
    assert meta["pretrained"]["preprocessing"] == (
        "timm's default for efficientnet_b0 (timm:efficientnet_b0.ra_in1k)"
    )
    assert meta["image_size"] == [224, 224]


def test_no_default_contract_means_the_user_chooses():
    with pytest.raises(export_checkpoint.UsageError, match="pass --tag=TAG .* or --eval_pipeline"):
        export_checkpoint.contract("cnn", "timm", None)
    size, pipeline, origin = export_checkpoint.contract(
        "cnn", "timm", None, "decode|resize_small(40)|center_crop(32)|value_range(0, 1)"
    )
    assert (size, origin) == (32, "--eval_pipeline")
    # Files converted before the contract (no eval pipeline recorded) get it when loaded.
    torchvision = export_checkpoint.default_contract("torchvision", "resnet50")
    assert torchvision[0] == "torchvision:resnet50.IMAGENET1K_V2"
    assert "backend='pil'" in torchvision[1].eval_pipeline(exact=True)
    assert export_checkpoint.default_contract("keras", "MobileNetV2")[0] == "keras:MobileNetV2"
