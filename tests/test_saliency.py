"""Saliency: exact feature gradients, maps concentrated where a hand-built model looks, compile-once,
every registry family, undoing the preprocessing geometry, checkpoint loading and the CLI tool."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxcls.explain import inference, overlay, saliency
from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.trainer import parallel
from tests import tiny

SIZE = 16
R1 = (slice(2, 6), slice(2, 6))  # The patch class 0 reads (red).
R2 = (slice(10, 14), slice(9, 13))  # The patch class 1 reads (green).


class TwoRegions(nnx.Module):
    """A fixed 3x3 convolution (channel 0: red minus green, channel 1: green minus red), then
    class 0 = mean of channel 0 over patch R1, class 1 = mean of channel 1 over patch R2, class
    2 = a constant. Only those patches of the image can matter for each class."""

    default_cam_layer = "stage1"

    def __init__(self):
        k = np.zeros((3, 3, 3, 2), np.float32)
        k[..., 0, 0], k[..., 1, 0] = 1 / 9, -1 / 9
        k[..., 1, 1], k[..., 0, 1] = 1 / 9, -1 / 9
        self.conv = nnx.Conv(3, 2, (3, 3), use_bias=False, rngs=nnx.Rngs(0))
        self.conv.kernel = nnx.Param(jnp.asarray(k))

    def __call__(self, x, *, train: bool):
        del train
        a = nnx.relu(self.conv(x))
        c0 = a[:, R1[0], R1[1], 0].mean((1, 2))
        c1 = a[:, R2[0], R2[1], 1].mean((1, 2))
        logits = jnp.stack([c0, c1, jnp.full_like(c0, 0.05)], -1)
        return logits, {"stem": x, "stage1": a, "pre_logits": a.mean((1, 2))}


class JittedInside(tiny.Tiny):
    """Tiny whose whole forward pass is one nested jax.jit call returning logits and features."""

    def __call__(self, x, *, train: bool):
        def inner(kernel, bias, mean, var, scale, shift, w, b, x):
            y = jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            y = (y + bias - mean) / jnp.sqrt(var + 1e-5) * scale + shift
            a = nnx.relu(y)
            return a.mean((1, 2)) @ w + b, a

        logits, a = jax.jit(inner)(
            self.conv.kernel[...],
            self.conv.bias[...],
            self.bn.mean[...],
            self.bn.var[...],
            self.bn.scale[...],
            self.bn.bias[...],
            self.head.kernel[...],
            self.head.bias[...],
            x,
        )
        return logits, {"stage1": a, "pre_logits": a.mean((1, 2))}


def two_region_images(n=2):
    x = np.zeros((n, SIZE, SIZE, 3), np.float32)
    x[:, R1[0], R1[1], 0] = 1.0
    x[:, R2[0], R2[1], 1] = 1.0
    return x


def _mass_inside(maps, box, grow=0):
    inside = np.zeros(maps.shape[1:], bool)
    inside[
        max(box[0].start - grow, 0) : box[0].stop + grow,
        max(box[1].start - grow, 0) : box[1].stop + grow,
    ] = True
    return maps[:, inside].sum(1) / maps.reshape(len(maps), -1).sum(1)


@pytest.mark.parametrize("model_cls", [tiny.Tiny, JittedInside])
def test_feature_gradients_are_exact(model_cls):
    """For Tiny, logits = head(mean_hw(A)), so dlogit_c/dA = head.kernel[:, c] / (H*W)."""
    model = model_cls(nnx.Rngs(params=0, dropout=1))
    g, p, r = nnx.split(model, nnx.Param, ...)
    x = jnp.asarray(tiny.batch(n=4)["image"])
    classes = jnp.array([-1, 2, 0, 1])
    logits, a, grads, chosen = saliency.feature_gradients(g, p, r, x, classes, "stage1")
    ref_logits, _ = tiny.Tiny.__call__(model, x, train=False)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert chosen[0] == int(np.argmax(ref_logits[0])) and list(chosen[1:]) == [2, 0, 1]
    expected = model.head.kernel[...].T[chosen][:, None, None, :] / (8 * 8)
    np.testing.assert_allclose(grads, jnp.broadcast_to(expected, a.shape), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_cam_is_concentrated_on_the_region_the_class_reads(method):
    ex = saliency.Explainer.from_model(TwoRegions())
    x = two_region_images()
    for cls, box, other in ((0, R1, R2), (1, R2, R1)):
        out = ex(x, method, target=cls)
        assert (out["classes"] == cls).all()
        assert (_mass_inside(out["maps"], box, grow=1) > 0.9).all(), method
        assert (_mass_inside(out["maps"], other, grow=1) < 0.02).all()


@pytest.mark.parametrize("method", ["gradients", "smoothgrad", "integrated_gradients"])
def test_input_attributions_stay_inside_the_region_the_class_reads(method):
    ex = saliency.Explainer.from_model(TwoRegions())
    x = two_region_images()
    for cls, box in ((0, R1), (1, R2)):
        out = ex(x, method, target=cls, samples=8, steps=16)
        assert out["maps"].max() == pytest.approx(1.0)
        # The 3x3 convolution reads one pixel beyond the patch; nothing else may matter.
        np.testing.assert_allclose(_mass_inside(out["maps"], box, grow=1), 1.0, atol=1e-6)


def test_integrated_gradients_are_complete_and_predicted_class_is_default():
    model = tiny.Tiny(nnx.Rngs(params=0, dropout=1))
    ex = saliency.Explainer.from_model(model, default_layer="stage1")
    x = tiny.batch(n=3)["image"]
    out = ex(x, "integrated_gradients", steps=64)
    logits = np.asarray(model(jnp.asarray(x), train=False)[0])
    base = np.asarray(model(jnp.zeros_like(x), train=False)[0])
    np.testing.assert_array_equal(out["classes"], logits.argmax(-1))
    c = out["classes"]
    diff = logits[np.arange(3), c] - base[np.arange(3), c]
    np.testing.assert_allclose(out["raw"].sum((1, 2, 3)), diff, rtol=0.02, atol=1e-3)


def test_each_method_compiles_once_per_batch_shape():
    ex = saliency.Explainer.from_model(TwoRegions())
    x = two_region_images(3)
    for target in (None, 1, [0, 1, 2]):
        ex(x, "gradcam", target=target)
        ex(x, "gradients", target=target)
    assert ex.traces == {"gradcam:stage1": 1, "gradients": 1}
    ex(x, "gradcam", layer="stem")  # Another feature is another function.
    assert ex.traces["gradcam:stem"] == 1


def test_bad_method_and_layer_are_named():
    ex = saliency.Explainer.from_model(TwoRegions())
    with pytest.raises(ValueError, match="integrated_gradients"):
        ex(two_region_images(), "lime")
    with pytest.raises(ValueError, match="stage9.*pre_logits"):
        ex(two_region_images(), "gradcam", layer="stage9")


# ------------------------------------------------------------------------ every registry family
def _families():
    """One registered name per architecture family (class, block layout, padding convention);
    by default one per model class (JAXCLS_SLOW_TESTS=1: every family)."""
    models = pytest.importorskip("jaxcls.models")
    groups = {}
    for name in models.list_models():
        info = models.model_info(name)
        d = info.defaults
        key = (info.cls.__name__, str(d.get("arch", "")), str(d.get("block", "")))
        key += (str(d.get("padding", "")), str(d.get("layout", "")))
        groups.setdefault(key, name)
    if os.environ.get("JAXCLS_SLOW_TESTS"):
        return sorted(groups.values())
    picked = {}
    for key, name in sorted(groups.items()):
        picked.setdefault(key[0], name)
    return sorted(picked.values())


# Narrow and shallow versions, so every family compiles in seconds on a CPU.
SMALL = {
    "EfficientNet": dict(channel_multiplier=0.25, depth_multiplier=0.25),
    "ResNet": dict(depths=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8),
    "ResNetV2": dict(depths=(1, 1, 1, 1), channels=(16, 16, 32, 32), stem_width=8),
    "CNN": dict(filters=(8, 16)),
    "DenseNet": dict(growth_rate=8, block_config=(1, 1, 1, 1), bn_size=2),
    "VGG": dict(cfg=((8,), (8,), (16,), (16,), (16,)), mlp_hidden=16),
}
SIZE_AT_LEAST = {"InceptionV3": 75}  # Its stem and reductions need 75x75.


@pytest.mark.parametrize("name", _families() if os.environ.get("JAXCLS_SLOW_TESTS") else ["*"])
def test_every_registry_family(name):
    models = pytest.importorskip("jaxcls.models")
    names = [name] if name != "*" else _families()
    for n in names:
        info = models.model_info(n)
        size = SIZE_AT_LEAST.get(info.cls.__name__, 32)
        x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
        model = models.create(
            n, num_classes=4, rngs=nnx.Rngs(params=0, dropout=1), **SMALL.get(info.cls.__name__, {})
        )
        ex = saliency.Explainer.from_model(model)
        assert ex.default_layer.startswith("stage")  # The last stage (a missing one raises).
        # SmoothGrad and integrated gradients reuse the input-gradient path under a scan (tested
        # above on TwoRegions); the full sweep runs them on every family.
        slow = os.environ.get("JAXCLS_SLOW_TESTS")
        for method in saliency.METHODS if slow else ("gradcam", "gradients"):
            out = ex(x, method, samples=2, steps=2)
            assert out["maps"].shape == (2, size, size), (n, method)
            assert np.isfinite(out["raw"]).all() and out["maps"].max() == pytest.approx(1.0)


# ------------------------------------------------------------------------------- geometry
def test_geometry_of_resize_maps_back_by_scaling():
    g = overlay.Geometry.from_pipeline("decode|resize(16)|value_range(-1, 1)", (40, 80))
    heat = np.zeros((16, 16), np.float32)
    heat[:, :8] = 1.0
    back = overlay.to_original(heat, g)
    assert back.shape == (40, 80)
    assert back[:, :38].min() > 0.99 and back[:, 42:].max() < 0.01


def test_geometry_of_resize_pad_drops_the_padding():
    g = overlay.Geometry.from_pipeline("decode|resize_pad(16)|value_range(-1, 1)", (20, 40))
    assert g.content == (4.0, 0.0, 12.0, 16.0)  # 20x40 -> 8x16 content, 4 rows of padding each.
    heat = np.zeros((16, 16), np.float32)
    heat[:4] = heat[12:] = 1.0  # Only the padding is "hot": nothing of the photo is.
    assert overlay.to_original(heat, g).max() == 0.0
    heat = np.zeros((16, 16), np.float32)
    heat[4:8] = 1.0  # The top half of the content is the top half of the photo.
    back = overlay.to_original(heat, g)
    assert back[:9].min() > 0.99 and back[11:].max() < 0.01


def test_geometry_of_center_crop_leaves_the_cut_off_part_cold():
    g = overlay.Geometry.from_pipeline("decode|resize_small(32)|central_crop(16)", (40, 80))
    assert g.source == pytest.approx((10.0, 30.0, 30.0, 50.0))
    back = overlay.to_original(np.ones((4, 4), np.float32), g)  # A raw 4x4 CAM works too.
    assert back[10:30, 30:50].min() == pytest.approx(1.0)
    assert back[:10].max() == 0.0 and back[:, 51:].max() == 0.0
    image = np.full((40, 80, 3), 100, np.uint8)
    blended = overlay.blend(image, back)
    assert blended.dtype == np.uint8 and (blended[0, 0] == 100).all()
    assert (blended[20, 40] != 100).any()


# ------------------------------------------------------------------- checkpoints and the tool
PIPELINE = "decode|resize_pad(8)|value_range(-1, 1)"


@pytest.fixture
def checkpoint_dir(tmp_path):
    """A workdir with a best checkpoint of Tiny after a few train steps."""
    mesh = parallel.make_mesh(1)
    compiled, state = tiny.make(mesh)
    for i in range(3):
        state, _ = compiled.train(state, parallel.shard_batch(tiny.batch(i), mesh))
    meta = {
        "model": "tiny",
        "model_kwargs": {},
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "image_size": [8, 8],
        "eval_pipeline": PIPELINE,
        "config": {"early_stopping": {"metric": "val/accuracy", "mode": "max"}},
    }
    ck = ckpt_lib.Checkpoints(str(tmp_path / "w" / "checkpoints"), async_save=False)
    ck.save(3, state, None, meta)
    ck.save_best(3, state, None, meta, {"val/accuracy": 0.5})
    ck.close()
    return str(tmp_path / "w"), tiny.host(state.params)


def _build_tiny(meta):
    assert meta["model"] == "tiny"
    return tiny.Tiny(nnx.Rngs(params=123, dropout=1))


def test_load_for_inference_restores_the_trained_parameters(checkpoint_dir):
    workdir, params = checkpoint_dir
    for path in (workdir, os.path.join(workdir, "checkpoints")):
        loaded = inference.load_for_inference(path, build=_build_tiny)
        assert loaded.step_dir.endswith(os.path.join("best", "3"))
        np.testing.assert_array_equal(loaded.model.conv.kernel[...], params["conv"]["kernel"])
        assert loaded.class_names == ["a", "b", "c"] and loaded.image_size == (8, 8)
    with pytest.raises(ckpt_lib.CheckpointError, match="do not fit"):
        inference.load_for_inference(
            workdir, build=lambda m: tiny.Tiny(nnx.Rngs(params=0, dropout=1), num_classes=4)
        )
    with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint"):
        inference.find_step_dir(os.path.dirname(workdir))


def test_saliency_tool_writes_overlays_at_the_original_size(checkpoint_dir, tmp_path, capsys):
    from jaxcls.explain import explain_files
    from tools import saliency as tool

    workdir, _ = checkpoint_dir
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(30, 50), (12, 12), (41, 17)]):
        path = str(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    loaded = inference.load_for_inference(workdir, build=_build_tiny)
    out = str(tmp_path / "out")
    summary = explain_files.explain_files(
        workdir,
        paths,
        out,
        methods=["gradcam", "ig"],
        layer="stage1",
        target="b",
        save_npy=True,
        batch_size=2,
        loaded=loaded,
        steps=4,
    )
    assert [row["explained"] for row in summary] == [
        {"gradcam": "b", "integrated_gradients": "b"}
    ] * 3
    for i, (h, w) in enumerate([(30, 50), (12, 12), (41, 17)]):
        png = Image.open(os.path.join(out, f"img{i}_gradcam.png"))
        assert png.size == (w, h)
        assert np.load(os.path.join(out, f"img{i}_gradcam.npy")).shape == (8, 8)
        assert np.load(os.path.join(out, f"img{i}_integrated_gradients.npy")).shape == (8, 8, 3)
        assert np.load(os.path.join(out, f"img{i}_gradcam_original.npy")).shape == (h, w)
    assert json.load(open(os.path.join(out, "saliency.json")))["layer"] == "stage1"
    capsys.readouterr()
    assert tool.main([paths[0], f"--checkpoint={tmp_path}/nothing", f"--out={out}"]) == 2
    assert capsys.readouterr().err.startswith("saliency: error: no checkpoint found")


def test_converted_pretrained_checkpoint_with_a_new_head(tmp_path):
    """The layout of tools/convert_weights.py ({'params', 'batch_stats'} pure dicts, no optimizer
    state), loaded through the registry, explained with every method."""
    models = pytest.importorskip("jaxcls.models")
    model = models.create("cnn_small", num_classes=5, rngs=nnx.Rngs(params=3, dropout=1))
    state = {
        "params": nnx.state(model, nnx.Param).to_pure_dict(),
        "batch_stats": nnx.state(model, nnx.BatchStat).to_pure_dict(),
    }
    meta = {
        "model": "cnn_small",
        "model_kwargs": {},
        "num_classes": 5,
        "class_names": list("abcde"),
        "image_size": [32, 32],
        "eval_pipeline": "",
        "pretrained": {"tag": "demo"},
    }
    store = ckpt_lib.Checkpoints(str(tmp_path / "conv" / "checkpoints"), async_save=False)
    store.save(0, state, None, meta)
    store.close()
    loaded = inference.load_for_inference(str(tmp_path / "conv"))
    assert loaded.eval_pipeline.startswith("decode(draft=32)|resize(32)")  # The default, none recorded.
    np.testing.assert_array_equal(
        nnx.state(loaded.model, nnx.Param).to_pure_dict()["head"]["kernel"],
        state["params"]["head"]["kernel"],
    )
    ex = saliency.Explainer.from_model(loaded.model)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    out = ex(x, "gradcam", target=4)
    assert (out["classes"] == 4).all() and out["maps"].max() == pytest.approx(1.0)
