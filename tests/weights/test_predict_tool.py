"""tools/predict.py (jaxcls.explain.predict): real converted ImageNet weights name real photos,
one line or JSON."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxcls.explain import predict
from jaxcls.weights import export_checkpoint
from tools import predict as predict_tool

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lite0"))
    export_checkpoint.convert(
        "efficientnet_lite0", "", "", out, tag="efficientnet_pytorch:efficientnet-lite0"
    )
    return out


def test_predict_names_the_cat_and_the_espresso(converted, tmp_path, capsys):
    cat, coffee = str(tmp_path / "chelsea.png"), str(tmp_path / "coffee.jpg")
    Image.fromarray(skimage_data.chelsea()).save(cat)
    Image.fromarray(skimage_data.coffee()).save(coffee)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    rc = predict_tool.main(
        [f"--checkpoint={converted}", cat, coffee, str(broken), "--top_k=5", "--json"]
    )
    assert rc == 1  # one image was unreadable
    out = json.loads(capsys.readouterr().out)
    by_image = {os.path.basename(p["image"]): p["top_k"] for p in out["predictions"]}
    assert by_image["chelsea.png"][0]["index"] in {281, 282, 283, 284, 285}  # a cat
    assert (
        "cat" in by_image["chelsea.png"][0]["class"]
        or by_image["chelsea.png"][0]["class"] == "tabby"
    )
    assert by_image["coffee.jpg"][0]["class"] == "espresso"
    assert by_image["coffee.jpg"][0]["probability"] > 0.5
    probs = [t["probability"] for t in by_image["chelsea.png"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert out["errors"] == [{"image": str(broken), "error": out["errors"][0]["error"]}]


def test_imagenet_names_only_for_index_named_1000_class_heads():
    names = predict.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[967] == "espresso"
    assert predict.class_names_for(["cat", "dog"]) == ["cat", "dog"]
    assert predict.class_names_for([str(i) for i in range(1000)])[281] == "tabby"
    assert np.unique(names).size > 990
