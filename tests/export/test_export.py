"""tools/export.py (jaxcls.export): every format round-trips tiny models with parity, the metadata
JSON is written, unsupported combinations are one-line errors, int8 reports its accuracy cost.

Each artefact is read back here the way docs/deploy.md tells a consumer to (jax.export,
onnxruntime, TensorFlow, LiteRT), independently of the exporter's own check, and compared with
jaxcls's logits on scikit-image's photos at two batch sizes. CI covers every format on
EfficientNet and ONNX on the CNN; JAXCLS_SLOW_TESTS=1 runs every family in every format.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from jaxcls import files
from jaxcls.explain import inference
from jaxcls.export import exporter, formats, metadata
from tests.export.conftest import CLASSES, FAMILIES
from tools import export as export_tool

skimage_data = pytest.importorskip("skimage.data")

if os.environ.get("JAXCLS_SLOW_TESTS"):
    MATRIX = {name: formats.FORMATS for name in FAMILIES}
else:
    # CI: every format on EfficientNet (depthwise convolutions, squeeze-excite), ONNX on the
    # CNN (max pooling: jax2onnx's 4-D MaxPool rewritten for onnxruntime) and TFLite on DenseNet
    # (inference writes a dense block into one buffer: its converter refused the slices of it
    # once, when a polymorphic batch made them gathers). The other families, one format each,
    # passed here in 100-550 s each on a loaded 2-core machine: too slow for CI.
    MATRIX = {"efficientnet_b0": formats.FORMATS, "cnn": ("onnx",), "densenet121": ("tflite",)}
PHOTOS = ("chelsea", "coffee", "astronaut")


# ------------------------------------------------------- consumer code, as in docs/deploy.md
def consume(fmt: str, path: str):
    """``run(images) -> logits`` the way a consumer without jaxcls loads each format."""
    if fmt == "stablehlo":
        with open(path, "rb") as f:
            exported = jax.export.deserialize(bytearray(f.read()))
        return lambda x: np.asarray(exported.call(x))
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda x: session.run(["logits"], {"images": x})[0]
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda x: serve(images=tf.constant(x))["logits"].numpy()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)

    def run(x):
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def artefact_path(tmp_path, fmt):
    return str(tmp_path / {"savedmodel": "model_savedmodel"}.get(fmt, f"model.{fmt}"))


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_every_format_round_trips_with_parity(name, tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint(name)
    prepared = exporter.prepare(checkpoint, log=lambda s: None)
    loaded = inference.load_for_inference(checkpoint)
    prep = loaded.preprocess_fn()
    x = np.stack([prep(getattr(skimage_data, p)()) for p in PHOTOS])
    expected = np.asarray(jax.jit(exporter.inference_fn(loaded))(x))
    for fmt in MATRIX[name]:
        out = artefact_path(tmp_path, fmt)
        meta = exporter.export(prepared, fmt, out, log=lambda s: None)
        run = consume(fmt, out)
        for batch in (x, x[:1]):  # two batch sizes through one artefact
            got = np.asarray(run(batch))
            want = expected[: len(batch)]
            assert got.shape == want.shape, (name, fmt)
            rel = np.abs(got - want).max() / np.abs(want).max()
            assert rel < 1e-4, (name, fmt, rel)
            assert (got.argmax(1) == want.argmax(1)).all(), (name, fmt)
        assert meta["size_bytes"] == files.size_bytes(out) > 0
        assert meta["parity"]["max_rel_diff"] < 1e-4 and meta["parity"]["top1_agree"] == 4
        with open(metadata.metadata_path(out)) as f:
            written = json.load(f)
        assert written["class_names"] == CLASSES and written["format"] == fmt
        size = FAMILIES[name][1]
        assert written["input"]["shape"] == ["batch", size, size, 3]
        pre = written["preprocessing"]
        assert pre["pipeline"] == loaded.eval_pipeline
        assert pre["resize"] == {
            "op": "resize_small",
            "size": size + 4,
            "method": "bilinear",
            "shorter_side": True,
        }
        assert pre["crop"] == {"size": size}
        assert pre["normalize"]["mean"] == [0.485, 0.456, 0.406]


def test_tool_prints_size_and_parity_and_writes_the_json(tiny_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "cnn.stablehlo")
    rc = export_tool.main(
        [f"--checkpoint={tiny_checkpoint('cnn')}", "--format=stablehlo", f"--out={out}"]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "preprocessing: decode|resize_small(36)|center_crop(32)|normalize('imagenet')" in printed
    assert "MB in" in printed and "max relative difference" in printed
    assert "top-1 agree 4/4" in printed
    assert os.path.isfile(out) and os.path.isfile(str(tmp_path / "cnn.stablehlo.json"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--format=onnx", "--quantize=int8"],
            "--quantize=int8 is not supported for --format=onnx",
        ),
        (["--format=savedmodel", "--quantize=int8"], "not supported for --format=savedmodel"),
        (["--format=tflite", "--quantize=int8"], "needs --eval_data=DIR"),
        (["--format=coreml"], "argument --format: invalid choice"),
        (["--format=onnx", "--images=missing.jpg"], "--images: missing.jpg: no such file"),
    ],
)
def test_unsupported_combinations_are_one_line_errors(
    flags, message, tiny_checkpoint, tmp_path, capsys
):
    out = str(tmp_path / "m.out")
    try:
        rc = export_tool.main([f"--checkpoint={tiny_checkpoint('cnn')}", f"--out={out}", *flags])
    except SystemExit as e:  # argparse's flag errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("export: error: ") and message in err, err
    assert not os.path.exists(out)


def test_wrong_kind_of_output_path(tiny_checkpoint, tmp_path, capsys):
    a_file = tmp_path / "exists.txt"
    a_file.write_text("x")
    rc = export_tool.main(
        [f"--checkpoint={tiny_checkpoint('cnn')}", "--format=savedmodel", f"--out={a_file}"]
    )
    assert rc == 2 and "is a file; a SavedModel is a folder" in capsys.readouterr().err
    rc = export_tool.main(
        [f"--checkpoint={tmp_path / 'nothing'}", "--format=onnx", f"--out={tmp_path / 'm.onnx'}"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nothing" in err


def test_int8_tflite_reports_the_accuracy_change(tiny_checkpoint, tmp_path):
    data = tmp_path / "eval"
    for cls, photo in zip(CLASSES, ("chelsea", "coffee", "astronaut", "rocket")):
        (data / cls).mkdir(parents=True)
        image = getattr(skimage_data, photo)()
        for i, (h, w) in enumerate(((0, 0), (40, 30))):
            Image.fromarray(image[h:, w:]).save(data / cls / f"{i}.png")
    (data / "cat" / "broken.png").write_bytes(b"not a png")
    out = str(tmp_path / "q.tflite")
    meta = exporter.export(
        tiny_checkpoint("efficientnet_b0"),
        "tflite",
        out,
        quantize="int8",
        eval_data=str(data),
        log=lambda s: None,
    )
    ev = meta["eval"]
    assert ev["images"] == 8 and ev["skipped"] == 1
    assert ev["accuracy_change"] == pytest.approx(ev["accuracy_tflite"] - ev["accuracy_jaxcls"])
    assert meta["quantize"] == "int8"
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {d["dtype"] for d in Interpreter(model_path=out).get_tensor_details()}
    assert np.int8 in dtypes  # weights stored as int8


def test_a_top1_mismatch_fails_and_removes_the_artefact(
    tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    real = formats.LOADERS["stablehlo"]

    def shifted(path):  # an artefact whose classes come out rotated by one
        run = real(path)
        return lambda x: np.roll(run(x), 1, axis=1)

    monkeypatch.setitem(formats.LOADERS, "stablehlo", shifted)
    out = tmp_path / "m.stablehlo"
    rc = export_tool.main(
        [f"--checkpoint={tiny_checkpoint('cnn')}", "--format=stablehlo", f"--out={out}"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "differ from jaxcls's" in err and "artefact removed" in err
    assert not out.exists() and not (tmp_path / "m.stablehlo.json").exists()


@pytest.mark.parametrize("name", ["efficientnet_b0", "resnetv2_50"])
def test_exports_trace_only_ops_every_runtime_knows(name):
    # On CPU the zoo runs depthwise convolutions as native custom calls, tiny convolutions as a
    # gather and max pooling with a custom gradient; an artefact holds none of them.
    from flax import nnx

    from jaxcls import models

    kwargs, size = FAMILIES[name]
    model = models.create(name, num_classes=4, rngs=nnx.Rngs(0), **kwargs)
    model.eval()
    x = np.zeros((1, size, size, 3), np.float32)

    def primitives():
        jaxpr = jax.make_jaxpr(lambda x: model(x, train=False)[0])(x)
        names = set()

        def walk(jx):
            for e in jx.eqns:
                names.add(e.primitive.name)
                for sub in jax.core.jaxprs_in_params(e.params):
                    walk(sub)

        walk(jaxpr.jaxpr)
        return names

    def ours(names):  # (jax.nn.relu's custom_jvp_call is plain JAX: it lowers to a max)
        return {p for p in names if p.startswith("custom_vjp") or p == "ffi_call"}

    with exporter.portable_kernels():
        portable = primitives()
    assert not ours(portable), portable
    assert "reduce_window_max" in portable or name == "efficientnet_b0"
    if jax.default_backend() == "cpu":  # what the portable kernels replace
        assert ours(primitives()), primitives()
