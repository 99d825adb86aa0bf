"""Writes the Keras golden parity fixtures of tests/weights/fixtures/ from keras.applications.

Run with Keras 3 on the JAX backend (Keras is a dev dependency; building the reference models is
too slow for CI, so CI compares against what this script wrote)::

    KERAS_BACKEND=jax python tools/make_keras_fixtures.py --out tests/weights/fixtures

(``tools/make_weight_fixtures.py`` writes the timm/torchvision cases; this is its Keras sibling.)

For each case the reference is built by ``keras.applications``' own ``ResNet(stack_fn, ...)`` with
its own block functions (``stack_residual_blocks_v1``/``_v2``), shrunk to narrow stages and few
blocks, 10 classes, no softmax, ``weights=None``. Every weight is randomised - BatchNorm gamma,
beta and moving statistics and conv/dense biases too, so a mix-up of any two shows - and rounded
to float16-exact values. The reference runs in float32 on a fixed uint8 RGB batch, preprocessed
by the application's own ``preprocess_input`` (ResNet: 'caffe' mode, BGR minus the ImageNet mean;
ResNetV2: 'tf' mode, [-1, 1]).

Written per case:

* ``<case>.h5``: the weights in the *legacy* Keras layout that the keras-applications downloads
  use (root attribute ``layer_names`` listing every layer, one group per layer whose attribute
  ``weight_names`` lists ``<layer>/<var>:0`` datasets), checked by loading it back into a fresh
  Keras model with Keras' own legacy loader and re-running the reference;
* ``<case>.weights.h5`` for cases marked ``keras3``: the same weights as Keras 3
  ``model.save_weights`` writes them (``layers/<layer>/vars/<index>``);
* ``<case>.npz``: ``image`` (NHWC uint8 RGB, before preprocessing) and ``logits``;

and an entry in ``cases.json`` naming our model, its constructor arguments, the weight file and
the pretrained tag whose preprocessing contract turns ``image`` into the model's input.

``keras_weight_names.json`` lists, for full-size applications (``FULL_SIZE``), every weight name
and shape of ``keras.applications.<App>(weights=None)``: the name maps are checked against the
real applications' names and shapes at full depth, without building Keras in the tests.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SIZE = 72  # 72 -> 36 -> 18 -> 9 -> 5 -> 3: odd and even maps through every stride.
BATCH = 2
NUM_CLASSES = 10


def _resnet_v1():
    """ResNet50's structure (conv2..conv5 stacks of bottlenecks, biases, stride on the 1x1)."""
    from keras.src.applications import resnet

    def stack_fn(x):
        x = resnet.stack_residual_blocks_v1(x, 8, 2, stride1=1, name="conv2")
        x = resnet.stack_residual_blocks_v1(x, 16, 2, name="conv3")
        x = resnet.stack_residual_blocks_v1(x, 32, 1, name="conv4")
        return resnet.stack_residual_blocks_v1(x, 64, 1, name="conv5")

    return resnet.ResNet(
        stack_fn, preact=False, use_bias=True, name="resnet50", **_common()
    ), resnet.preprocess_input


def _resnet_v2():
    """ResNet50V2's structure (pre-activation, stride in each stack's last block, post_bn)."""
    from keras.src.applications import resnet, resnet_v2

    def stack_fn(x):  # Two blocks per stack: Keras names a 1-block stack's two blocks alike.
        x = resnet.stack_residual_blocks_v2(x, 8, 2, name="conv2")
        x = resnet.stack_residual_blocks_v2(x, 16, 2, name="conv3")
        x = resnet.stack_residual_blocks_v2(x, 24, 2, name="conv4")
        return resnet.stack_residual_blocks_v2(x, 32, 2, stride1=1, name="conv5")

    return resnet.ResNet(
        stack_fn, preact=True, use_bias=True, name="resnet50v2", **_common()
    ), resnet_v2.preprocess_input


def _common():
    return dict(
        include_top=True,
        weights=None,
        input_shape=(SIZE, SIZE, 3),
        classes=NUM_CLASSES,
        classifier_activation=None,
    )


def cases():
    """name -> (reference builder, our model, our constructor overrides, pretrained tag, keras3)."""
    return {
        "keras_resnet50": (
            _resnet_v1, "keras_resnet50",
            {"depths": [2, 2, 1, 1], "widths": [8, 16, 32, 64]}, "keras:ResNet50", True,
        ),
        "keras_resnet50v2": (
            _resnet_v2, "keras_resnet50v2",
            {"depths": [2, 2, 2, 2], "channels": [32, 64, 96, 128]}, "keras:ResNet50V2", False,
        ),
    }  # fmt: skip


# Full-size applications whose weight names and shapes are recorded (deepest and shallowest).
FULL_SIZE = ("ResNet50", "ResNet152", "ResNet50V2", "ResNet152V2")


def write_weight_names(out: str) -> None:
    import keras

    names = {}
    for app in FULL_SIZE:
        model = getattr(keras.applications, app)(weights=None)
        names[app] = {w.path: list(w.shape) for w in model.weights}
        print(f"{app}: {len(names[app])} weights")
    with open(os.path.join(out, "keras_weight_names.json"), "w") as f:
        json.dump(names, f, separators=(",", ":"), sort_keys=True)


def randomise(model, rng: np.random.Generator) -> None:
    """Random float16-exact weights: kernels at their init scale, BN statistics and biases."""
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        kind = type(layer).__name__
        if kind == "BatchNormalization":
            n = ws[0].shape[0]
            ws = [
                rng.uniform(0.5, 1.5, n),
                rng.normal(0, 0.1, n),
                rng.normal(0, 0.1, n),
                rng.uniform(0.5, 1.5, n),
            ]
        else:  # Conv2D / Dense: keep the Glorot kernel, give the bias (if any) some values.
            ws = [ws[0]] + [rng.normal(0, 0.1, w.shape) for w in ws[1:]]
        layer.set_weights([np.float16(w).astype(np.float32) for w in ws])


def write_legacy_h5(model, path: str) -> None:
    """The keras-applications download layout (written by Keras 2 / tf.keras ``save_weights``)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, w in zip(names, layer.get_weights()):
                g.create_dataset(name, data=np.asarray(w, np.float32))


def check_legacy_h5(build, path: str, x, logits) -> None:
    """Keras' own legacy loader reads the file back into a fresh model: the same logits."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    model, _ = build()
    with h5py.File(path, "r") as f:
        legacy_h5_format.load_weights_from_hdf5_group(f, model)
    again = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(again, logits)


def write_case(name, build, model_name, kwargs, tag, keras3, out) -> dict:
    model, preprocess_input = build()
    randomise(model, np.random.default_rng(1))
    image = np.random.default_rng(2).integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    x = preprocess_input(image.astype(np.float32))
    logits = np.asarray(model(x, training=False), np.float32)
    files = {"file": f"{name}.h5"}
    write_legacy_h5(model, os.path.join(out, files["file"]))
    check_legacy_h5(build, os.path.join(out, files["file"]), x, logits)
    if keras3:
        files["keras3_file"] = f"{name}.weights.h5"
        model.save_weights(os.path.join(out, files["keras3_file"]))
    np.savez_compressed(os.path.join(out, f"{name}.npz"), image=image, logits=logits)
    n = sum(int(np.prod(w.shape)) for w in model.weights)
    print(
        f"{name}: {len(model.weights)} tensors, {n:,} values, max|logits| {np.abs(logits).max():.3g}"
    )
    return {
        "model": model_name,
        "kwargs": kwargs,
        "source": "keras",
        "num_classes": NUM_CLASSES,
        "pretrained": tag,
        **files,
    }


def main() -> None:
    if os.environ.get("KERAS_BACKEND") != "jax":
        raise SystemExit("run with KERAS_BACKEND=jax")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/weights/fixtures")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument(
        "--names",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(re)write keras_weight_names.json",
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    wanted = set(filter(None, args.only.split(",")))
    index_path = os.path.join(args.out, "cases.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    for name, spec in cases().items():
        if wanted and name not in wanted:
            continue
        index[name] = write_case(name, *spec, args.out)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    if args.names:
        write_weight_names(args.out)


if __name__ == "__main__":
    main()
