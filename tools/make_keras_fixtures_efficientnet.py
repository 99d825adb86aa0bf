"""Writes the keras.applications parity fixtures of tests/weights/fixtures/ (Keras 3, JAX backend).

Called by tools/make_weight_fixtures.py for its ``keras*`` cases, or directly::

    KERAS_BACKEND=jax python tools/make_keras_fixtures.py --out tests/weights/fixtures

Each case builds a keras.applications model with the library's own builders
(``efficientnet.EfficientNet``, ``efficientnet_v2.EfficientNetV2``, ``mobilenet_v2.MobileNetV2``),
shrunk by their width/depth coefficients to 10 classes and a 48x48 input, with ``weights=None``;
BatchNormalization gamma/beta and every bias are randomised and the moving statistics calibrated
on the input then perturbed (:func:`calibrate`), so that a mix-up shows and the logits depend on
every layer. Written per case:

* the weights as the application downloads hold them: a legacy ``.h5`` in the TF-era layout
  (root ``layer_names``, per-layer ``weight_names`` such as ``block1a_dwconv/depthwise_kernel:0``,
  the EfficientNet ``normalization`` layer's ``mean``/``variance``/``count``), checked by loading
  it back with Keras' own legacy loader; or a Keras 3 ``.weights.h5`` (``model.save_weights``);
* ``<golden>.npz``: ``input``, raw RGB images (uint8, 0..255: what a user hands to the Keras model)
  and ``logits``, the Keras model's output for them with Keras' preprocessing: in the model for
  EfficientNet/EfficientNetV2, ``mobilenet_v2.preprocess_input`` for MobileNetV2.

EfficientNet B0-B7 downloads are ``weights='imagenet'`` models: their graph has a second
``Rescaling`` by ``1 / sqrt(std)`` after ``Normalization``, whose stored ``variance`` is the
ImageNet *std* (keras efficientnet.py, TF issue 49930). The reference here is that graph: the
application's own Rescaling and Normalization layers (set to the stored statistics), the extra
Rescaling, then the rest of the application model. The converted model must reproduce it from
the registry's preprocessing contract alone (tests/weights/test_parity.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

SIZE = 48
BATCH = 2
NUM_CLASSES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)  # keras efficientnet.IMAGENET_STDDEV_RGB


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    return keras


def _common():
    """Shrunk, 10 logits; Dropout off (the calibration pass runs in training mode)."""
    return dict(
        input_shape=(SIZE, SIZE, 3),
        classes=NUM_CLASSES,
        classifier_activation=None,
        weights=None,
    )


def _efficientnet(width, depth):
    from keras.src.applications import efficientnet

    return efficientnet.EfficientNet(
        width,
        depth,
        SIZE,
        dropout_rate=0.0,
        drop_connect_rate=0.0,
        name="efficientnet",
        **_common(),
    )


def _efficientnet_v2(name, width, depth):
    from keras.src.applications import efficientnet_v2

    return efficientnet_v2.EfficientNetV2(
        width, depth, SIZE, dropout_rate=0.0, drop_connect_rate=0.0, name=name, **_common()
    )


def _mobilenet_v2(alpha):
    from keras.src.applications import mobilenet_v2

    return mobilenet_v2.MobileNetV2(alpha=alpha, **_common())


def _raw(x):
    return x


def _mobilenet_v2_preprocess(x):
    from keras.src.applications import mobilenet_v2

    return mobilenet_v2.preprocess_input(x)


# name -> (builder, tag, our constructor overrides, weight file kind, golden npz, Keras input fn).
# EfficientNetV2's round_filters has no 10% round-up (timm round_limit=0): at the S alias's width
# 1.0 this changes nothing, at the fixture's 0.1 it does, hence round_limit in that case.
V1 = {"channel_multiplier": 0.1, "depth_multiplier": 0.34}


# Layers the application downloads name otherwise than today's builders: keras-applications 1.0
# (which made the MobileNetV2 ImageNet files) called MobileNetV2's classifier 'Logits'.
LEGACY_LAYER_NAMES = {"keras_mobilenetv2": {"predictions": "Logits"}}


def cases():
    return {
        "keras_efficientnet_b0": (
            lambda: _efficientnet(0.1, 0.34), "keras:EfficientNetB0", V1, "h5",
            "keras_efficientnet_b0", _raw,
        ),
        "keras3_efficientnet_b0": (
            lambda: _efficientnet(0.1, 0.34), "keras:EfficientNetB0", V1, "weights.h5",
            "keras_efficientnet_b0", _raw,
        ),
        "keras_efficientnetv2_b0": (
            lambda: _efficientnet_v2("efficientnetv2-b0", 0.1, 0.5), "keras:EfficientNetV2B0",
            {"channel_multiplier": 0.1, "depth_multiplier": 0.5}, "h5",
            "keras_efficientnetv2_b0", _raw,
        ),
        "keras_efficientnetv2_s": (
            lambda: _efficientnet_v2("efficientnetv2-s", 0.1, 0.25), "keras:EfficientNetV2S",
            {"channel_multiplier": 0.1, "depth_multiplier": 0.25, "round_limit": 0.0}, "h5",
            "keras_efficientnetv2_s", _raw,
        ),
        "keras_mobilenetv2": (
            lambda: _mobilenet_v2(0.1), "keras:MobileNetV2", {"channel_multiplier": 0.1}, "h5",
            "keras_mobilenetv2", _mobilenet_v2_preprocess,
        ),
    }  # fmt: skip


def randomise(model, rng: np.random.Generator) -> None:
    """Non-trivial BatchNorm gamma/beta and biases (Keras initialises them to ones/zeros, which
    would hide a swapped or missing tensor)."""
    keras = _keras()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("f4"))
            layer.beta.assign((rng.standard_normal(n) * 0.1).astype("f4"))
        elif getattr(layer, "bias", None) is not None:
            b = layer.bias
            b.assign((rng.standard_normal(b.shape) * 0.1).astype("f4"))


def calibrate(model, reference, x, rng: np.random.Generator) -> None:
    """BatchNorm moving statistics of the activations ``reference`` computes for ``x``, perturbed.

    Arbitrary statistics on a thin random network make the activations die out layer by layer:
    the logits then hardly depend on the input and a wrong stem or padding goes unnoticed. One
    training-mode pass with momentum 0 sets every moving mean/variance to the batch's (so eval
    mode keeps unit-scale activations); the perturbation (mean +- 0.1 std, variance x 0.7..1.3)
    keeps a mean/variance mix-up visible.
    """
    keras = _keras()
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    reference(x, training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        mean, var = np.asarray(bn.moving_mean.numpy()), np.asarray(bn.moving_variance.numpy())
        n = mean.shape[0]
        bn.moving_mean.assign((mean + rng.standard_normal(n) * 0.1 * np.sqrt(var)).astype("f4"))
        bn.moving_variance.assign((var * rng.uniform(0.7, 1.3, n)).astype("f4"))


def fp16_exact(model) -> None:
    """Rounds every float32 weight to a float16-exact value: stored as float16, no loss."""
    for v in model.weights:
        if v.dtype == "float32":
            v.assign(np.asarray(v.numpy()).astype("f2").astype("f4"))


def imagenet_graph(model):
    """The ``weights='imagenet'`` EfficientNet graph around ``model``'s layers (module docstring):
    Rescaling(1/255) -> Normalization(mean, variance=std) -> Rescaling(1/sqrt(std)) -> stem..."""
    keras = _keras()
    rescale, norm = model.layers[1], model.layers[2]
    assert isinstance(rescale, keras.layers.Rescaling), rescale
    assert isinstance(norm, keras.layers.Normalization), norm
    norm.adapt_mean.assign(np.asarray(IMAGENET_MEAN, "f4"))
    norm.adapt_variance.assign(np.asarray(IMAGENET_STD, "f4"))  # What the downloads store.
    norm.finalize_state()
    tail = keras.Model(model.layers[3].input, model.output)
    inp = keras.Input((SIZE, SIZE, 3))
    x = norm(rescale(inp))
    x = keras.layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STD])(x)
    return keras.Model(inp, tail(x))


def legacy_var_name(layer, var, layer_name: str) -> str:
    """A variable's name as TF-era Keras wrote it (``depthwise_kernel`` for DepthwiseConv2D)."""
    keras = _keras()
    name = var.name
    if isinstance(layer, keras.layers.DepthwiseConv2D) and name == "kernel":
        name = "depthwise_kernel"
    return f"{layer_name}/{name}:0"


def _small(a: np.ndarray) -> np.ndarray:
    """float16-exact float32 arrays (all weights, see randomise) as float16: half the size."""
    exact = a.dtype == np.float32 and np.array_equal(a.astype("f2").astype("f4"), a)
    return a.astype("f2") if exact else a


def save_legacy_h5(model, path: str, renames: dict[str, str]) -> None:
    """The application-download layout (TF 2 ``save_weights_to_hdf5_group``): every layer listed
    in ``layer_names``, each layer group listing its ``weight_names`` (datasets nested by name);
    ``renames``: layers the download names differently. Only the storage is smaller than a
    download's: float16 values, the newest HDF5 object format.
    """
    import h5py

    keras = _keras()
    with h5py.File(path, "w", libver="latest") as f:
        layer_names = [renames.get(layer.name, layer.name) for layer in model.layers]
        f.attrs["layer_names"] = [n.encode() for n in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode()
        for layer, layer_name in zip(model.layers, layer_names):
            g = f.create_group(layer_name)
            names = [legacy_var_name(layer, v, layer_name) for v in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, v in zip(names, layer.weights):
                g.create_dataset(n, data=_small(np.asarray(v.numpy())))


def save_keras3(model, path: str) -> None:
    """``model.save_weights`` (Keras 3 ``.weights.h5``), repacked with float16 values and the
    newest HDF5 object format (same groups, attributes and datasets); checked by loading it back
    with ``model.load_weights``."""
    import h5py

    tmp = path + ".tmp.weights.h5"
    model.save_weights(tmp)

    def copy(src, dst):
        dst.attrs.update(src.attrs)
        for key, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key))
            else:
                dst.create_dataset(key, data=_small(item[()]))

    with h5py.File(tmp, "r") as src, h5py.File(path, "w", libver="latest") as dst:
        copy(src, dst)
    os.remove(tmp)


def check_keras_reads_it(build, path: str, model) -> None:
    """Keras' own loader restores ``model``'s weights from ``path`` into a fresh build (for a
    legacy ``.h5``: by position, as for application downloads)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    fresh = build()
    if path.endswith(".weights.h5"):
        fresh.load_weights(path)
    else:
        with h5py.File(path, "r") as f:
            legacy_h5_format.load_weights_from_hdf5_group(f, fresh)
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()), err_msg=a.path)


def write_case(name, build, tag, kwargs, kind, golden, keras_input, out, built) -> dict:
    """Builds (or reuses, for a second file of one model) the reference and writes the case."""
    keras = _keras()
    if golden not in built:
        keras.utils.set_random_seed(0)
        model = build()
        randomise(model, np.random.default_rng(1))
        norm = model.layers[2]
        adapted = isinstance(norm, keras.layers.Normalization) and norm.input_mean is None
        reference = imagenet_graph(model) if adapted else model  # EfficientNet B0-B7.
        x = np.random.default_rng(2).integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
        calibrate(model, reference, keras_input(x.astype("f4")), np.random.default_rng(3))
        fp16_exact(model)
        logits = np.asarray(reference(keras_input(x.astype("f4")), training=False))
        np.savez_compressed(os.path.join(out, f"{golden}.npz"), input=x, logits=logits)
        built[golden] = model
    model = built[golden]
    path = os.path.join(out, f"{name}.{kind}")
    if kind == "h5":
        save_legacy_h5(model, path, LEGACY_LAYER_NAMES.get(golden, {}))
    else:
        save_keras3(model, path)
    check_keras_reads_it(build, path, model)
    n = sum(int(np.prod(v.shape)) for v in model.weights)
    print(
        f"{name}: {model.name}, {len(model.weights)} tensors, {n:,} values, "
        f"{os.path.getsize(path):,} bytes"
    )
    return {
        "model": tag.split(":", 1)[1],
        "kwargs": kwargs,
        "source": "keras",
        "num_classes": NUM_CLASSES,
        "tag": tag,
        "file": os.path.basename(path),
        "golden": f"{golden}.npz",
    }


def write(out: str, wanted: set[str], index: dict) -> None:
    """Writes the wanted cases (all when empty) into ``out`` and ``index`` (cases.json)."""
    built: dict = {}
    for name, (build, tag, kwargs, kind, golden, keras_input) in cases().items():
        if wanted and name not in wanted:
            continue
        index[name] = write_case(name, build, tag, kwargs, kind, golden, keras_input, out, built)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/weights/fixtures")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    index_path = os.path.join(args.out, "cases.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {}
    write(args.out, set(filter(None, args.only.split(","))), index)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
