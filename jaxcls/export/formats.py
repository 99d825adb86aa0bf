"""The deployable formats: write a jitted inference function to a file, and run the file back.

Each format has a writer ``write(fn, hw, out, quantize) -> None`` that serialises
``fn(images float32 [B, H, W, 3]) -> logits float32 [B, K]`` (parameters baked in as constants,
the batch dimension left free) to ``out``, and a loader ``load(out) -> run`` giving
``run(images numpy) -> logits numpy`` through the format's own runtime, so the exporter checks
the artefact a consumer would load, not the function it came from:

* ``stablehlo``: ``jax.export`` with a symbolic batch dimension, ``Exported.serialize()`` bytes;
  run by ``jax.export.deserialize(...).call``.
* ``onnx``: jax2onnx (``to_onnx`` with a named dynamic batch dimension 'B'); run by onnxruntime.
* ``savedmodel``: ``jax.experimental.jax2tf`` (native serialisation: the StableHLO module wrapped
  in an ``XlaCallModule`` op) in a ``tf.function`` with a ``[None, H, W, 3]`` signature, saved with
  ``tf.saved_model.save`` as the ``serving_default`` signature; run by TensorFlow.
* ``tflite``: that SavedModel through ``tf.lite.TFLiteConverter`` (float32, or dynamic-range int8
  weights with ``quantize='int8'``); run by LiteRT's ``ai_edge_litert.interpreter.Interpreter``.

References: https://docs.jax.dev/en/latest/export/export.html (jax.export and shape
polymorphism), https://github.com/enpasos/jax2onnx, https://github.com/jax-ml/jax/tree/main/jax/experimental/jax2tf,
https://ai.google.dev/edge/litert/models/post_training_quant (dynamic range quantisation).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

FORMATS = ("stablehlo", "onnx", "savedmodel", "tflite")
QUANTIZABLE = {"tflite": ("int8",)}  # format -> the --quantize values it supports
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(ValueError):
    """An export that cannot be done as asked (an unsupported combination, a converter that fails,
    an artefact that does not reproduce the model); the message is one line."""


def check_format(fmt: str, quantize: str = "") -> None:
    """Raises ExportError for an unknown format or a quantisation the format does not support."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if quantize and quantize not in QUANTIZABLE.get(fmt, ()):
        where = ", ".join(f"{q} for --format={f}" for f, qs in QUANTIZABLE.items() for q in qs)
        raise ExportError(
            f"--quantize={quantize} is not supported for --format={fmt} (supported: {where})"
        )


def _atomic_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------ stablehlo
def _write_stablehlo(fn: Callable, hw, out: str, quantize: str) -> None:
    import jax
    import jax.numpy as jnp

    (batch,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((batch, *hw, 3), jnp.float32)
    exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "tpu"))(spec)
    _atomic_bytes(out, bytes(exported.serialize()))


def _load_stablehlo(out: str) -> Callable:
    import jax

    with open(out, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    return lambda x: np.asarray(exported.call(np.asarray(x, np.float32)))


# ----------------------------------------------------------------------------------------- onnx
def _nhwc_max_pools(proto) -> int:
    """Rewrites jax2onnx's max pools into ones onnxruntime runs; returns how many.

    jax2onnx 0.17 lowers ``reduce_window_max`` on an NHWC tensor to Unsqueeze x2 -> MaxPool with a
    4-D window ``[1, kh, kw, 1]`` over ``[1, 1, B, H, W, C]`` -> Squeeze; onnxruntime's MaxPool
    takes at most 3 spatial dimensions ("Unsupported pooling size"). Each such MaxPool whose
    window, stride and padding are 1/1/0 on the batch and channel axes becomes the equivalent
    Squeeze -> Transpose to NCHW -> 2-D MaxPool -> Transpose back -> Unsqueeze."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    axes_name = "jaxcls_axes_01"
    nodes, fixed = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k = list(attrs.get("kernel_shape", []))
        st = list(attrs.get("strides", [1] * len(k)))
        pads = list(attrs.get("pads", [0] * 2 * len(k)))
        if (
            node.op_type != "MaxPool"
            or len(k) != 4
            or (k[0], k[3], st[0], st[3]) != (1, 1, 1, 1)
            or any(pads[i] for i in (0, 3, 4, 7))
            or any(d != 1 for d in attrs.get("dilations", [1] * 4))
        ):
            nodes.append(node)
            continue
        fixed += 1
        base = f"{node.name or 'maxpool'}_{fixed}_nchw"
        extra = {n: v for n, v in attrs.items() if n in ("ceil_mode", "auto_pad") and v}
        nodes += [
            helper.make_node("Squeeze", [node.input[0], axes_name], [base + "_sq"]),
            helper.make_node("Transpose", [base + "_sq"], [base + "_in"], perm=[0, 3, 1, 2]),
            helper.make_node(
                "MaxPool",
                [base + "_in"],
                [base + "_out"],
                name=base,
                kernel_shape=k[1:3],
                strides=st[1:3],
                pads=[pads[1], pads[2], pads[5], pads[6]],
                **extra,
            ),
            helper.make_node("Transpose", [base + "_out"], [base + "_nhwc"], perm=[0, 2, 3, 1]),
            helper.make_node("Unsqueeze", [base + "_nhwc", axes_name], [node.output[0]]),
        ]
    if fixed:
        graph.initializer.append(numpy_helper.from_array(np.array([0, 1], np.int64), axes_name))
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(proto)
    return fixed


def _write_onnx(fn: Callable, hw, out: str, quantize: str) -> None:
    import jax2onnx

    proto = jax2onnx.to_onnx(
        fn,
        [("B", *hw, 3)],
        model_name="jaxcls",
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
    )
    _nhwc_max_pools(proto)
    _atomic_bytes(out, proto.SerializeToString())


def _load_onnx(out: str) -> Callable:
    import onnxruntime as ort

    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]


# -------------------------------------------------------------------------- savedmodel / tflite
def _tf_function(fn: Callable, hw):
    import tensorflow as tf
    from jax.experimental import jax2tf

    h, w = hw
    converted = jax2tf.convert(fn, polymorphic_shapes=[f"(b, {h}, {w}, 3)"], with_gradient=False)
    return tf.function(
        lambda images: {OUTPUT_NAME: converted(images)},
        autograph=False,
        input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name=INPUT_NAME)],
    )


def _save_tf(fn: Callable, hw, folder: str) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.serve = _tf_function(fn, hw)
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})


def _write_savedmodel(fn: Callable, hw, out: str, quantize: str) -> None:
    parent = os.path.dirname(os.path.abspath(out))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        _save_tf(fn, hw, tmp)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_savedmodel(out: str) -> Callable:
    import tensorflow as tf

    serve = tf.saved_model.load(out).signatures["serving_default"]
    return lambda x: serve(**{INPUT_NAME: tf.constant(np.asarray(x, np.float32))})[
        OUTPUT_NAME
    ].numpy()


def _write_tflite(fn: Callable, hw, out: str, quantize: str) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        _save_tf(fn, hw, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantize == "int8":  # dynamic range: int8 weights, float activations
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        data = converter.convert()
    _atomic_bytes(out, data)


def _load_tflite(out: str) -> Callable:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=out)
    inp = interpreter.get_input_details()[0]
    outp = interpreter.get_output_details()[0]

    def run(x):
        x = np.asarray(x, np.float32)
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(outp["index"]).copy()

    return run


WRITERS = {
    "stablehlo": _write_stablehlo,
    "onnx": _write_onnx,
    "savedmodel": _write_savedmodel,
    "tflite": _write_tflite,
}
LOADERS = {
    "stablehlo": _load_stablehlo,
    "onnx": _load_onnx,
    "savedmodel": _load_savedmodel,
    "tflite": _load_tflite,
}


def write(fmt: str, fn: Callable, hw, out: str, quantize: str = "") -> None:
    """Serialises ``fn`` in ``fmt`` to ``out`` (a file; a folder for 'savedmodel')."""
    check_format(fmt, quantize)
    WRITERS[fmt](fn, tuple(int(v) for v in hw), out, quantize)


def load(fmt: str, out: str) -> Callable:
    """``run(images) -> logits`` through ``fmt``'s own runtime."""
    check_format(fmt)
    return LOADERS[fmt](out)
