"""The keras.applications parity fixtures (Keras 3 on the JAX backend); run through the CLI of
tools/make_weight_fixtures.py (``--only='keras_*'``, see its docstring).

Each case builds a keras.applications model with the library's own builders, shrunk (width/depth
coefficients, fewer blocks, or divided widths where Keras takes no arguments), 10 classes, no
softmax, ``weights=None``. BatchNorm gamma/beta and every bias are randomised and the moving
statistics calibrated on the case's images (tools/fixture_common.py). Every case stores uint8 RGB
images and names the pretrained ``tag`` whose preprocessing contract must turn them into our
model's input; the reference gets them through Keras' own preprocessing: the application's
``preprocess_input`` ('caffe': BGR minus the mean; 'tf': [-1, 1]; 'torch': ImageNet), or the
model's own Rescaling/Normalization layers (EfficientNet, EfficientNetV2). Written per case:

* ``<case>.h5``: the weights in the layout of the application downloads (TF-era legacy ``.h5``:
  root ``layer_names``, per layer ``weight_names`` such as ``block1a_dwconv/depthwise_kernel:0``;
  :func:`save_legacy_h5`), float16, checked by loading it back with Keras' own legacy loader;
* ``<case>.weights.h5`` for cases with ``keras3``: the Keras 3 ``model.save_weights`` file,
  repacked as float16 (:func:`float16_repack`), checked by ``model.load_weights``;
* ``<case>.npz``: ``input`` (the images) and ``logits``; a *synthetic* case (InceptionV3, whose
  widths Keras fixes: 24M parameters) stores no weight file but its ``manifest`` and calibrated
  ``statistics`` instead (fixture_common.synthetic_weights).

EfficientNet B0-B7 downloads are ``weights='imagenet'`` models: their graph has a second
``Rescaling`` by ``1 / sqrt(std)`` after ``Normalization``, whose stored ``variance`` is the
ImageNet *std* (keras efficientnet.py, TF issue 49930). That case's reference is this graph
(:func:`imagenet_graph`); the converted model must reproduce it from the tag's contract alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable

import numpy as np

from tools import fixture_common as common

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)  # keras efficientnet.IMAGENET_STDDEV_RGB
VGG_DIV = 16  # Keras VGG16 widths / 16: 4-8-16-32-32.
VGG_OURS = {"cfg": [[4, 4], [8, 8], [16, 16, 16], [32, 32, 32], [32, 32, 32]], "mlp_hidden": 32}


def _keras():
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("the Keras fixtures are written with KERAS_BACKEND=jax")
    return keras


def _top(size: int) -> dict:
    return dict(
        include_top=True,
        weights=None,
        input_shape=(size, size, 3),
        classes=common.NUM_CLASSES,
        classifier_activation=None,
    )


# ------------------------------------------------------------------------------ reference models
def _resnet50(size):
    """ResNet50's structure (conv2..conv5 bottleneck stacks, biases, stride on the 1x1)."""
    from keras.src.applications import resnet

    def stack_fn(x):
        x = resnet.stack_residual_blocks_v1(x, 8, 2, stride1=1, name="conv2")
        x = resnet.stack_residual_blocks_v1(x, 16, 2, name="conv3")
        x = resnet.stack_residual_blocks_v1(x, 32, 1, name="conv4")
        return resnet.stack_residual_blocks_v1(x, 64, 1, name="conv5")

    return resnet.ResNet(stack_fn, False, True, name="resnet50", **_top(size))


def _resnet50v2(size):
    """ResNet50V2's structure (pre-activation, stride in each stack's last block, post_bn)."""
    from keras.src.applications import resnet

    def stack_fn(x):  # Two blocks per stack: Keras names a 1-block stack's two blocks alike.
        x = resnet.stack_residual_blocks_v2(x, 8, 2, name="conv2")
        x = resnet.stack_residual_blocks_v2(x, 16, 2, name="conv3")
        x = resnet.stack_residual_blocks_v2(x, 24, 2, name="conv4")
        return resnet.stack_residual_blocks_v2(x, 32, 2, stride1=1, name="conv5")

    return resnet.ResNet(stack_fn, True, True, name="resnet50v2", **_top(size))


def _densenet121(size):
    from keras.src.applications import densenet

    return densenet.DenseNet([1, 1, 1, 1], **_top(size))


def _vgg16(size):
    """VGG16 as its own source builds it, every width divided (names, layer order and the NHWC
    flattening stay Keras'; the full 224x224 input gives fc1 its 7x7 map)."""
    from keras.src import layers as real
    from keras.src.applications import vgg16

    class Shrunk:
        def __getattr__(self, attr):
            return getattr(real, attr)

        @staticmethod
        def Conv2D(filters, *a, **k):  # noqa: N802 (Keras' name)
            return real.Conv2D(filters // VGG_DIV, *a, **k)

        @staticmethod
        def Dense(units, *a, **k):  # noqa: N802
            return real.Dense(VGG_OURS["mlp_hidden"] if units == 4096 else units, *a, **k)

    saved, vgg16.layers = vgg16.layers, Shrunk()
    try:
        return vgg16.VGG16(**_top(size))
    finally:
        vgg16.layers = saved


def _inception_v3(size):
    from keras.src.applications import inception_v3

    return inception_v3.InceptionV3(**_top(size))


def _efficientnet(width, depth):
    def build(size):
        from keras.src.applications import efficientnet

        return efficientnet.EfficientNet(
            width, depth, size, dropout_rate=0.0, drop_connect_rate=0.0, name="efficientnet",
            **_top(size),
        )  # fmt: skip

    return build


def _efficientnet_v2(name, width, depth):
    def build(size):
        from keras.src.applications import efficientnet_v2

        return efficientnet_v2.EfficientNetV2(
            width, depth, size, dropout_rate=0.0, drop_connect_rate=0.0, name=name, **_top(size)
        )

    return build


def _mobilenet_v2(size):
    from keras.src.applications import mobilenet_v2

    return mobilenet_v2.MobileNetV2(alpha=0.1, **_top(size))


@dataclasses.dataclass(frozen=True)
class Case:
    build: Callable  # (input size) -> keras.Model
    model: str  # our model name
    kwargs: dict  # our constructor overrides (on top of the tag's model arguments)
    tag: str  # the pretrained tag whose preprocessing contract the reference's input follows
    preprocess: str | None  # keras.applications module whose preprocess_input; None: in-model
    size: int = 48
    batch: int = common.BATCH
    keras3: bool = False  # also a Keras 3 .weights.h5
    synthetic: bool = False  # no weight file: manifest + statistics (module docstring)
    # Layers the application downloads name otherwise than today's builders: keras-applications
    # 1.0 (which made the MobileNetV2 ImageNet files) called MobileNetV2's classifier 'Logits'.
    renames: dict = dataclasses.field(default_factory=dict)


V1 = {"channel_multiplier": 0.1, "depth_multiplier": 0.34}
# EfficientNetV2's round_filters has no 10% round-up (timm round_limit=0): at the S alias's width
# 1.0 this changes nothing, at the fixture's 0.1 it does, hence round_limit in that case.
CASES = {
    "keras_resnet50": Case(
        _resnet50, "keras_resnet50", {"depths": [2, 2, 1, 1], "widths": [8, 16, 32, 64]},
        "keras:ResNet50", "resnet", size=72, keras3=True,
    ),
    "keras_resnet50v2": Case(
        _resnet50v2, "keras_resnet50v2", {"depths": [2, 2, 2, 2], "channels": [32, 64, 96, 128]},
        "keras:ResNet50V2", "resnet_v2", size=72,
    ),
    "keras_densenet121": Case(
        _densenet121, "DenseNet121", {"block_config": [1, 1, 1, 1]}, "keras:DenseNet121",
        "densenet", size=32,
    ),
    "keras_vgg16": Case(_vgg16, "VGG16", VGG_OURS, "keras:VGG16", "vgg16", size=224, batch=1),
    "keras_inception_v3": Case(
        _inception_v3, "InceptionV3", {}, "keras:InceptionV3", "inception_v3", size=75,
        synthetic=True,
    ),
    "keras_efficientnet_b0": Case(
        _efficientnet(0.1, 0.34), "EfficientNetB0", V1, "keras:EfficientNetB0", None, keras3=True
    ),
    "keras_efficientnetv2_b0": Case(
        _efficientnet_v2("efficientnetv2-b0", 0.1, 0.5), "EfficientNetV2B0",
        {"channel_multiplier": 0.1, "depth_multiplier": 0.5}, "keras:EfficientNetV2B0", None,
    ),
    "keras_efficientnetv2_s": Case(
        _efficientnet_v2("efficientnetv2-s", 0.1, 0.25), "EfficientNetV2S",
        {"channel_multiplier": 0.1, "depth_multiplier": 0.25, "round_limit": 0.0},
        "keras:EfficientNetV2S", None,
    ),
    "keras_mobilenetv2": Case(
        _mobilenet_v2, "MobileNetV2", {"channel_multiplier": 0.1}, "keras:MobileNetV2",
        "mobilenet_v2", renames={"predictions": "Logits"},
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------- weights
def legacy_var_name(layer, var, layer_name: str) -> str:
    """A variable's name as TF-era Keras wrote it (``depthwise_kernel`` for DepthwiseConv2D)."""
    name = var.name
    if isinstance(layer, _keras().layers.DepthwiseConv2D) and name == "kernel":
        name = "depthwise_kernel"
    return f"{layer_name}/{name}:0"


def _named_variables(model, renames=None):
    """(layer, legacy name without ':0', variable) of every variable of ``model``."""
    for layer in model.layers:
        layer_name = (renames or {}).get(layer.name, layer.name)
        for v in layer.weights:
            yield layer, legacy_var_name(layer, v, layer_name)[:-2], v


def randomise(model, rng: np.random.Generator) -> None:
    """BatchNorm gamma/beta and every bias (fixture_common's policy); kernels keep Keras' init."""
    keras = _keras()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            scale, shift = common.affine(layer.moving_mean.shape[0], rng)
            if layer.gamma is not None:
                layer.gamma.assign(scale)
            layer.beta.assign(shift)
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(common.bias(layer.bias.shape, rng))


def set_synthetic(model) -> dict[str, list[int]]:
    """Loads fixture_common.synthetic_weights into ``model``; returns the manifest."""
    manifest = {name: list(v.shape) for _, name, v in _named_variables(model)}
    weights = common.synthetic_weights(manifest, "keras")
    for _, name, v in _named_variables(model):
        v.assign(weights[name])
    return manifest


def calibrate(model, reference, x, rng: np.random.Generator) -> None:
    """BatchNorm moving statistics of the activations ``reference`` computes for ``x`` (one
    training-mode pass with momentum 0), then perturbed (fixture_common.perturb_statistics)."""
    keras = _keras()
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    reference(x, training=True)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        mean, var = common.perturb_statistics(
            bn.moving_mean.numpy(), bn.moving_variance.numpy(), rng
        )
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)


def fp16_exact(model) -> None:
    """Every float32 weight rounded to float16-exact values, except an in-model Normalization's
    statistics (the tag's contract holds them exactly)."""
    keras = _keras()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Normalization):
            for v in layer.weights:
                if v.dtype == "float32":
                    v.assign(common.fp16_exact(v.numpy()))


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
    inp = keras.Input(model.input.shape[1:])
    x = norm(rescale(inp))
    x = keras.layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STD])(x)
    return keras.Model(inp, tail(x))


def _needs_imagenet_graph(model) -> bool:
    norm = model.layers[2] if len(model.layers) > 2 else None
    return isinstance(norm, _keras().layers.Normalization) and norm.input_mean is None


# ------------------------------------------------------------------------------------- files
def _small(a: np.ndarray) -> np.ndarray:
    """float16-exact float32 arrays as float16 (half the size, no loss); others unchanged."""
    exact = a.dtype == np.float32 and np.array_equal(common.fp16_exact(a), a)
    return a.astype("f2") if exact else a


def save_legacy_h5(model, path: str, renames: dict[str, str] | None = None) -> None:
    """The application-download layout (TF 2 ``save_weights_to_hdf5_group``): every layer listed
    in ``layer_names``, each layer group listing its ``weight_names`` (datasets nested by name);
    ``renames``: layers the download names differently. Only the storage is smaller than a
    download's: float16 values, the newest HDF5 object format."""
    import h5py

    keras = _keras()
    with h5py.File(path, "w", libver="latest") as f:
        layer_names = [(renames or {}).get(layer.name, layer.name) for layer in model.layers]
        f.attrs["layer_names"] = [n.encode() for n in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode()
        for layer, layer_name in zip(model.layers, layer_names):
            g = f.create_group(layer_name)
            names = [legacy_var_name(layer, v, layer_name) for v in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, v in zip(names, layer.weights):
                g.create_dataset(n, data=_small(np.asarray(v.numpy())))


def float16_repack(src_path: str, path: str) -> None:
    """A copy of an HDF5 weight file (same groups, attributes, datasets) with float16-exact
    float32 datasets stored as float16, in the newest HDF5 object format."""
    import h5py

    def copy(src, dst):
        dst.attrs.update(src.attrs)
        for key, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key))
            else:
                dst.create_dataset(key, data=_small(item[()]))

    with h5py.File(src_path, "r") as src, h5py.File(path, "w", libver="latest") as dst:
        copy(src, dst)


def check_keras_reads_it(case: Case, path: str, model) -> None:
    """Keras' own loader restores ``model``'s weights from ``path`` into a fresh build (for a
    legacy ``.h5``: by position, as for application downloads)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    fresh = case.build(case.size)
    if path.endswith(".weights.h5"):
        fresh.load_weights(path)
    else:
        with h5py.File(path, "r") as f:
            legacy_h5_format.load_weights_from_hdf5_group(f, fresh)
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()), err_msg=a.path)


# ------------------------------------------------------------------------------------- cases
def _preprocess(case: Case, image: np.ndarray) -> np.ndarray:
    """What the Keras model is given for uint8 ``image``: the application's preprocess_input."""
    import importlib

    x = image.astype(np.float32)
    if case.preprocess is None:  # Rescaling/Normalization inside the model.
        return x
    module = importlib.import_module(f"keras.src.applications.{case.preprocess}")
    return np.asarray(module.preprocess_input(x), np.float32)


def write_case(name: str, case: Case, out: str) -> dict:
    keras = _keras()
    keras.utils.clear_session()  # Auto-numbered layer names start from zero (conv2d, conv2d_1).
    keras.utils.set_random_seed(0)
    model = case.build(case.size)
    if case.synthetic:
        manifest = set_synthetic(model)
    else:
        randomise(model, np.random.default_rng(1))
    reference = imagenet_graph(model) if _needs_imagenet_graph(model) else model
    image = common.images((case.batch, case.size, case.size, 3))
    x = _preprocess(case, image)
    calibrate(model, reference, x, np.random.default_rng(3))
    fp16_exact(model)
    logits = np.asarray(reference(x, training=False), np.float32)
    files = {}
    if case.synthetic:
        weights = {n: np.asarray(v.numpy()) for _, n, v in _named_variables(model)}
        statistics = common.pack_statistics(weights)
        common.save_case(out, name, image, logits, manifest, statistics)
    else:
        files["file"] = f"{name}.h5"
        save_legacy_h5(model, os.path.join(out, files["file"]), case.renames)
        if case.keras3:
            files["keras3_file"] = f"{name}.weights.h5"
            with tempfile.TemporaryDirectory() as tmp:
                model.save_weights(os.path.join(tmp, "w.weights.h5"))
                float16_repack(
                    os.path.join(tmp, "w.weights.h5"), os.path.join(out, files["keras3_file"])
                )
        for f in files.values():
            check_keras_reads_it(case, os.path.join(out, f), model)
        common.save_case(out, name, image, logits)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in files.values())
    print(f"{name}: keras {model.name}, {len(model.weights)} tensors, {size:,} bytes, "
          f"max|logits| {np.abs(logits).max():.3g}")  # fmt: skip
    extra = {"weights": "synthetic", "layout": "keras"} if case.synthetic else {}
    return common.case_entry(case.model, case.kwargs, "keras", tag=case.tag, **files, **extra)


# Full-size applications whose weight names and shapes the manifest records.
FULL_SIZE = (
    "ResNet50", "ResNet152", "ResNet50V2", "ResNet152V2", "DenseNet121", "DenseNet169",
    "DenseNet201", "VGG16", "VGG19", "InceptionV3", "EfficientNetB0", "EfficientNetB7",
    "EfficientNetV2B0", "EfficientNetV2S", "MobileNetV2",
)  # fmt: skip


def full_layouts() -> dict[str, dict[str, list[int]]]:
    """``{application: {name: shape}}``: ``keras.applications.<App>(weights=None)`` written with
    Keras' own legacy writer and read back by our reader (the names a download holds)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from jaxcls.weights.readers import read_weights

    keras = _keras()
    layouts = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "full.h5")
        for app in FULL_SIZE:
            keras.utils.clear_session()
            model = getattr(keras.applications, app)(weights=None)
            with h5py.File(path, "w") as f:
                legacy_h5_format.save_weights_to_hdf5_group(f, model)
            layouts[app] = {k: list(v.shape) for k, v in read_weights(path).items()}
    return layouts
