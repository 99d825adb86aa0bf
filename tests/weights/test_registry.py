"""Pretrained tags: well-formed contracts, hash verification, offline errors that say what to do.

Downloads use ``file://`` URLs (urllib's own scheme), so nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import urllib.error

import numpy as np
import pytest

from input_pipeline import pp
from jaxcls.weights import registry
from jaxcls.weights.errors import WeightsError

HEX = set("0123456789abcdef")


@pytest.mark.parametrize("tag", registry.list_tags())
def test_every_tag_is_well_formed(tag):
    t = registry.get(tag)
    assert t.tag == tag and t.source == tag.split(":")[0]
    assert t.url.startswith(("https://", "pypi:"))
    for h, n in ((t.sha256, 64), (t.md5, 32)):
        assert h is None or (len(h) == n and set(h) <= HEX)
    assert t.hash_prefix is None or (len(t.hash_prefix) >= 8 and set(t.hash_prefix) <= HEX)
    p = t.preprocessing
    assert 64 <= p.input_size <= 600 and 0.5 < p.crop_pct <= 1.0
    assert p.interpolation in ("bilinear", "bicubic") and p.channel_order in ("RGB", "BGR")
    assert len(p.mean) == len(p.std) == 3 and all(s > 0 for s in p.std)
    assert p.resize_size >= p.input_size
    pp.parse(p.eval_pipeline())  # The contract is a valid eval pipeline.


@functools.cache
def _targets(model_name: str, kwargs: tuple, num_classes: int) -> dict:
    """Every parameter path -> shape of a model, built abstractly (shared by sources)."""
    from flax import nnx

    from jaxcls import models
    from jaxcls.weights import convert

    model = nnx.eval_shape(
        lambda: models.create(model_name, num_classes=num_classes, rngs=nnx.Rngs(0), **dict(kwargs))
    )
    return convert.model_targets(model)


@functools.cache
def _conversions() -> dict[tuple, list[str]]:
    """(source, model, model kwargs) -> the tags that convert that way."""
    out: dict[tuple, list[str]] = {}
    for tag in registry.list_tags():
        t = registry.get(tag)
        key = (t.source, t.model, tuple(sorted(t.model_kwargs.items())), t.num_classes)
        out.setdefault(key, []).append(tag)
    return out


@pytest.mark.parametrize(
    "key", sorted(_conversions()), ids=lambda k: "/".join(_conversions()[k])[:80]
)
def test_every_tag_has_a_complete_name_map(key):
    """``--config.init.pretrained=TAG`` can convert: the tag's model, built with the tag's model
    arguments, has a name map from the tag's source covering every parameter and statistic."""
    from jaxcls.weights import maps

    source, model_name, kwargs, num_classes = key
    target = _targets(model_name, kwargs, num_classes)
    name_map, _ = maps.build(source, model_name, target)
    assert set(name_map) == set(target)
    assert len({src for src, _ in name_map.values()}) == len(target)  # One tensor per parameter.


def test_known_contracts():
    """Spot checks against the origins' published numbers."""
    tv = registry.get("torchvision:resnet50")  # DEFAULT = IMAGENET1K_V2: resize 232, crop 224.
    assert tv.tag == "torchvision:resnet50.IMAGENET1K_V2" and tv.hash_prefix == "11ad3fa6"
    assert tv.preprocessing.resize_size == 232 and tv.preprocessing.input_size == 224
    assert tv.preprocessing.eval_pipeline() == (
        "decode|resize_small(232, 'bilinear')|center_crop(224)|"
        "normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))"
    )
    timm = registry.get("timm:efficientnet_b0.ra_in1k")
    assert timm.preprocessing.resize_size == 256 and timm.preprocessing.interpolation == "bicubic"
    assert timm.hash_prefix == "3dd342df" and timm.mirrors[0].startswith("https://huggingface.co/")
    keras = registry.get("keras:ResNet50")
    assert keras.preprocessing.channel_order == "BGR" and keras.md5.startswith("2cb95161")
    v2 = registry.get("torchvision:efficientnet_v2_s")
    assert v2.model == "tf_efficientnetv2_s" and v2.model_kwargs["padding"] == "symmetric"
    lite = registry.get("efficientnet_pytorch:efficientnet-lite0")
    assert lite.model_kwargs == {"padding": "same_tf", "bn_eps": 1e-3, "bn_momentum": 0.99}


def test_unknown_tag_lists_close_ones():
    with pytest.raises(WeightsError, match=r"close: \['timm:efficientnet_b0.ra_in1k'"):
        registry.get("timm:efficientnet_b0.ra_in1")


def _local_tag(tmp_path, payload: bytes, **hashes) -> registry.PretrainedTag:
    src = tmp_path / "origin" / "weights-0123abcd.pth"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(payload)
    base = registry.get("torchvision:resnet18")
    fields = {"hash_prefix": None, **hashes}
    return dataclasses.replace(base, tag="test:local", url=src.as_uri(), **fields)


def test_fetch_downloads_verifies_and_caches(tmp_path):
    payload = b"weights" * 1000
    sha = hashlib.sha256(payload).hexdigest()
    tag = _local_tag(tmp_path, payload, sha256=sha)
    cache = tmp_path / "cache"
    path = registry.fetch(tag, str(cache))
    assert open(path, "rb").read() == payload and os.path.dirname(path) == str(cache)
    assert sorted(os.listdir(cache)) == ["weights-0123abcd.pth"]  # No temporary file left.
    os.remove(tag.url[len("file://") :])  # Cached now: no second download.
    assert registry.fetch(tag, str(cache)) == path
    assert registry.resolve_init(path=path, pretrained="")[0] == path


@pytest.mark.parametrize(
    "hashes", [{"sha256": "0" * 64}, {"hash_prefix": "deadbeef"}, {"md5": "0" * 32}]
)
def test_fetch_hash_mismatch_leaves_nothing(tmp_path, hashes):
    tag = _local_tag(tmp_path, b"tampered", **hashes)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="does not match test:local"):
        registry.fetch(tag, str(cache))
    assert os.listdir(cache) == []


def test_md5_and_prefix_verification(tmp_path):
    payload = b"abc" * 10
    tag = _local_tag(tmp_path, payload, md5=hashlib.md5(payload).hexdigest())
    assert registry.verify(tag.url[len("file://") :], tag) == "md5"
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    tag = dataclasses.replace(tag, md5=None, hash_prefix=prefix)
    assert registry.verify(tag.url[len("file://") :], tag) == f"sha256 prefix {prefix}"


def test_offline_error_names_url_and_flag(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(registry.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError) as e:
        registry.fetch("timm:efficientnet_b0.ra_in1k", str(tmp_path / "cache"))
    msg = str(e.value)
    assert "efficientnet_b0_ra-3dd342df.pth" in msg and "--config.init.path=FILE" in msg
    assert os.listdir(tmp_path / "cache") == []
    with pytest.raises(WeightsError, match="no such file"):
        registry.resolve_init(path=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="--config.init.pretrained=TAG"):
        registry.resolve_init()


def test_lite0_tag_resolves_to_the_installed_package(lite0_file):
    path, tag = registry.resolve_init("efficientnet_pytorch:efficientnet-lite0")
    assert os.path.samefile(path, lite0_file) and tag.model == "efficientnet_lite0"
    assert registry.verify(path, tag) == "sha256"
    with pytest.raises(WeightsError, match="does not match"):  # A local file under a wrong tag.
        registry.resolve_init("timm:efficientnet_lite0.ra_in1k", path=lite0_file)


def test_keras_contracts_follow_keras_applications():
    """keras.applications 3.15: EfficientNet B0-B7 and EfficientNetV2 B0-B3 rescale by 1/255 and
    normalise by the ImageNet mean/std inside the model; EfficientNetV2 S/M/L compute x/128 - 1;
    MobileNetV2's preprocess_input is mode 'tf', x/127.5 - 1 (tests/weights/test_parity.py feeds
    fixtures through these contracts)."""
    norms = {
        "EfficientNetB0": registry.IMAGENET,
        "EfficientNetB7": registry.IMAGENET,
        "EfficientNetV2B0": registry.IMAGENET,
        "EfficientNetV2S": registry.KERAS_128,
        "EfficientNetV2L": registry.KERAS_128,
        "MobileNetV2": registry.INCEPTION,
    }
    for name, norm in norms.items():
        p = registry.get(f"keras:{name}").preprocessing
        assert (p.mean, p.std, p.channel_order) == (*norm, "RGB"), name
    x = np.array([0.0, 100.0, 255.0])
    mean, std = registry.KERAS_128
    np.testing.assert_allclose((x / 255 - mean[0]) / std[0], x / 128 - 1, atol=1e-12)


def test_keras_mobilenetv2_tag_builds_keras_conventions():
    """--config.init.pretrained=keras:MobileNetV2 builds the alias with Keras' 'SAME' padding and
    BatchNorm eps 1e-3 / momentum 0.999 (the alias's own defaults are PyTorch ones)."""
    from configs import cnn as cnn_config
    from jaxcls.trainer import weights_init

    c = cnn_config.get_config()
    c.unlock()
    c.model.name = ""
    c.init.pretrained = "keras:MobileNetV2"
    c.lock()
    r = weights_init.resolve_config(c)
    assert r.model.name == "MobileNetV2"
    assert (r.model.padding, r.model.bn_eps, r.model.bn_momentum) == ("same_tf", 1e-3, 0.999)
    assert "normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))" in r.data.eval_pipeline
