"""tools/convert_weights.py (jaxcls.weights.export_checkpoint) writes a checkpoint in
jaxcls/trainer/checkpoint.py's layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax  # noqa: E402
import numpy as np
import pytest

from jaxcls.trainer import checkpoint as ckpt_lib  # noqa: E402
from jaxcls.weights import export_checkpoint
from jaxcls.weights.readers import read_weights  # noqa: E402

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "convert_weights.py")


def test_convert_tool_writes_restorable_checkpoint(tmp_path, lite0_file, capsys):
    """The real ImageNet Lite0 file through the tool: a checkpoint that restores tensor for tensor
    and, run on real photos with its own preprocessing, gives the source framework's top-5 classes
    and probabilities (efficientnet_pytorch's logits in fixtures/lite0_photos.npz, written by
    tools/make_real_weight_fixture.py)."""
    out = str(tmp_path / "lite0")
    meta = export_checkpoint.convert(
        "efficientnet_lite0", "", "", out, tag="efficientnet_pytorch:efficientnet-lite0"
    )
    printed = capsys.readouterr().out
    assert "247 tensors matched" in printed and "4,694,024 values" in printed
    step_dir = os.path.join(out, "checkpoints", "latest", "0")
    on_disk = ckpt_lib.read_meta(step_dir)
    assert on_disk["model"] == "efficientnet_lite0" == meta["model"]
    assert on_disk["model_kwargs"]["padding"] == "same_tf"
    assert on_disk["pretrained"]["sha256"].startswith("57934424")
    assert on_disk["eval_pipeline"].startswith("decode|resize_small(256, 'bicubic')")
    store = ckpt_lib.Checkpoints(os.path.join(out, "checkpoints"), async_save=False)
    try:
        step, state, data_state, restored_meta = store.restore_latest(None)  # Arrays as saved.
    finally:
        store.close()
    assert step == 0 and data_state is None and restored_meta == on_disk
    kernel = np.asarray(state["params"]["stem"]["conv"]["kernel"])
    want = read_weights(lite0_file)["_conv_stem.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(kernel, want)
    mean = np.asarray(state["batch_stats"]["conv_head"]["bn"]["mean"])
    np.testing.assert_array_equal(mean, read_weights(lite0_file)["_bn1.running_mean"])
    assert jax.tree.leaves(state["params"])

    from jaxcls.explain import inference
    from jaxcls.weights import registry
    from tests.weights.test_parity import FIXTURES, contract_input

    golden = np.load(os.path.join(FIXTURES, "lite0_photos.npz"))
    loaded = inference.load_for_inference(out)
    x = contract_input(registry.get("efficientnet_pytorch:efficientnet-lite0"), golden["images"])
    probs = np.asarray(jax.nn.softmax(loaded.model(x, train=False)[0], axis=-1))
    ref = np.asarray(jax.nn.softmax(golden["logits"], axis=-1))
    for name, p, r in zip(golden["names"], probs, ref):
        top5, ref_top5 = np.argsort(-p)[:5], np.argsort(-r)[:5]
        assert list(top5) == list(ref_top5), (name, top5, ref_top5)
        np.testing.assert_allclose(p[top5], r[top5], atol=1e-4, err_msg=str(name))
    assert np.argmax(ref[0]) in range(281, 286)  # chelsea: a cat, per the source framework too.


def test_convert_tool_keras_file_reproduces_keras_logits(tmp_path, capsys):
    """``--source=keras`` on the legacy-.h5 Keras MobileNetV2 fixture: the checkpoint written,
    rebuilt from its meta alone (model, model_kwargs) and fed the tag's contract, gives Keras'
    logits (parity criterion of tests/weights/test_parity.py)."""
    from flax import nnx

    from jaxcls.explain import inference
    from jaxcls.weights import registry
    from tests.weights.test_parity import CASES, FIXTURES, TOLERANCE, contract_input

    spec = CASES["keras_mobilenetv2"]
    tag = registry.get(spec["tag"])
    kwargs = json.dumps({**tag.model_kwargs, **spec["kwargs"]})
    out = str(tmp_path / "mnv2")
    meta = export_checkpoint.convert(
        "MobileNetV2",
        "keras",
        os.path.join(FIXTURES, spec["file"]),
        out,
        num_classes=spec["num_classes"],
        model_kwargs=kwargs,
    )
    assert "keras -> MobileNetV2: 262 tensors matched" in capsys.readouterr().out
    assert meta["model_kwargs"]["padding"] == "same_tf" and meta["pretrained"]["source"] == "keras"
    loaded = inference.load_for_inference(
        out, build=lambda m: nnx.eval_shape(lambda: inference.build_from_meta(m))
    )
    golden = np.load(os.path.join(FIXTURES, "keras_mobilenetv2.npz"))
    logits, _ = loaded.model(contract_input(tag, golden["input"]), train=False)
    ref = golden["logits"]
    assert np.max(np.abs(np.asarray(logits) - ref)) <= TOLERANCE * np.max(np.abs(ref))


def test_convert_tool_rejects_bad_model_kwargs(tmp_path):
    with pytest.raises(export_checkpoint.UsageError, match="JSON object"):
        export_checkpoint.convert("MobileNetV2", "keras", "x.h5", str(tmp_path), model_kwargs="[1]")
    # The command line reports it as every tool reports a user error: one line, exit code 2.
    args = ["--model=MobileNetV2", "--source=keras", "--input=x.h5", f"--output={tmp_path}"]
    r = subprocess.run(
        [sys.executable, TOOL, *args, "--model_kwargs=[1]"], capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        "convert_weights: error: --model_kwargs must be a JSON object"
    ], r.stderr
    assert not os.listdir(tmp_path)
