""".safetensors and Keras .h5 files: round trips, damaged files and NaN weights refused."""

from __future__ import annotations

import json
import os
import struct

import h5py
import ml_dtypes
import numpy as np
import pytest

from jaxcls.weights.errors import WeightsError
from jaxcls.weights.layout import keras3_var_names
from jaxcls.weights.readers import read_weights, safetensors_metadata, sniff_format

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float32),
        "emb": rng.standard_normal((2, 5)).astype(np.float16),
        "steps": np.arange(3, dtype=np.int64),
    }


# ---------------------------------------------------------------------------------- safetensors
def test_safetensors_round_trip(tmp_path):
    path = str(tmp_path / "w.safetensors")
    safetensors_numpy.save_file(_tensors(), path, metadata={"format": "np"})
    assert sniff_format(path) == "safetensors"
    got = read_weights(path)
    assert set(got) == set(_tensors())
    for k, v in _tensors().items():
        assert got[k].dtype == v.dtype
        np.testing.assert_array_equal(got[k], v)
    assert safetensors_metadata(path) == {"format": "np"}


def test_safetensors_bfloat16(tmp_path):
    """numpy has no bfloat16: such files are still read (as ml_dtypes.bfloat16)."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    t = torch.linspace(-3, 3, 9, dtype=torch.bfloat16).reshape(3, 3)
    path = str(tmp_path / "bf.safetensors")
    safetensors_torch.save_file({"w": t, "b": torch.ones(2)}, path)
    got = read_weights(path)
    assert got["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got["w"].astype(np.float32), t.float().numpy())


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.9, 0.999])
def test_safetensors_truncated_refused(tmp_path, keep):
    path = tmp_path / "w.safetensors"
    safetensors_numpy.save_file(_tensors(), str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: max(9, int(len(data) * keep))])
    with pytest.raises(WeightsError):
        read_weights(str(cut))


def test_safetensors_lying_header_refused(tmp_path):
    """Offsets pointing past the data are caught by safetensors' own validation."""
    header = {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "lie.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    with pytest.raises(WeightsError):
        read_weights(str(path))


def test_safetensors_nan_refused(tmp_path):
    t = _tensors()
    t["conv.bias"][1] = np.nan
    t["emb"][0, 0] = np.inf
    path = str(tmp_path / "nan.safetensors")
    safetensors_numpy.save_file(t, path)
    with pytest.raises(WeightsError, match=r"conv\.bias \(1 non-finite of 4\), emb"):
        read_weights(path)


# --------------------------------------------------------------------------------------- keras
def _keras_legacy_file(path, layers, *, under_model_weights=False, suffix=":0"):
    """Writes the Keras 2 application layout: layer_names -> weight_names -> datasets."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        root.attrs["layer_names"] = [n.encode() for n in layers]
        for layer, weights in layers.items():
            g = root.create_group(layer)
            names = [f"{layer}/{w}{suffix}" for w in weights]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, arr in zip(names, weights.values()):
                g.create_dataset(n, data=arr)


def _keras_layers():
    rng = np.random.default_rng(1)
    return {
        "input_1": {},
        "stem_conv": {"kernel": rng.standard_normal((3, 3, 3, 8)).astype(np.float32)},
        "stem_bn": {
            "gamma": np.ones(8, np.float32),
            "beta": np.zeros(8, np.float32),
            "moving_mean": rng.standard_normal(8).astype(np.float32),
            "moving_variance": np.full(8, 2.0, np.float32),
        },
        "block1a_dwconv": {"depthwise_kernel": rng.standard_normal((3, 3, 8, 1)).astype("f4")},
        "predictions": {
            "kernel": rng.standard_normal((8, 10)).astype(np.float32),
            "bias": np.zeros(10, np.float32),
        },
    }


@pytest.mark.parametrize("under_model_weights", [False, True])
def test_keras_legacy_h5(tmp_path, under_model_weights):
    path = str(tmp_path / "app.h5")
    _keras_legacy_file(path, _keras_layers(), under_model_weights=under_model_weights)
    assert sniff_format(path) == "hdf5"
    got = read_weights(path)
    want = {f"{ly}/{w}": a for ly, ws in _keras_layers().items() for w, a in ws.items()}
    assert list(got) == list(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)


def test_keras_h5_nan_refused(tmp_path):
    layers = _keras_layers()
    layers["stem_bn"]["moving_variance"][3] = np.nan
    path = str(tmp_path / "nan.h5")
    _keras_legacy_file(path, layers)
    with pytest.raises(WeightsError, match="stem_bn/moving_variance"):
        read_weights(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_keras_h5_truncated_refused(tmp_path, keep):
    path = tmp_path / "app.h5"
    _keras_legacy_file(str(path), _keras_layers())
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError):
        read_weights(str(cut))


def test_keras_h5_listed_weight_missing_and_unknown_layout(tmp_path):
    path = str(tmp_path / "bad.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv"]
        g = f.create_group("conv")
        g.attrs["weight_names"] = [b"conv/kernel:0"]
    with pytest.raises(WeightsError, match="conv/kernel:0 is listed but missing"):
        read_weights(path)
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.ones(3))
    with pytest.raises(WeightsError, match="no Keras weight layout"):
        read_weights(other)


def test_keras3_weights_h5_layout(tmp_path):
    """``layers/<class key>/vars/<i>`` with the real layer name in vars' ``name`` attribute."""
    path = str(tmp_path / "m.weights.h5")
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    with h5py.File(path, "w") as f:
        conv = f.create_group("layers/conv2d/vars")
        conv.attrs["name"] = "stem_conv"
        conv.create_dataset("0", data=kernel)
        conv.create_dataset("1", data=np.zeros(4, np.float32))
        bn = f.create_group("layers/batch_normalization/vars")
        bn.attrs["name"] = "stem_bn"
        for i in range(4):
            bn.create_dataset(str(i), data=np.full(4, i, np.float32))
        f.create_group("layers/input_layer/vars").attrs["name"] = "input_layer"
        f.create_group("vars").attrs["name"] = "functional"
        f.create_group("optimizer/vars").create_dataset("0", data=np.ones(1))
    got = read_weights(path)
    assert set(got) == {"stem_conv/0", "stem_conv/1"} | {f"stem_bn/{i}" for i in range(4)}
    named = keras3_var_names(got)
    np.testing.assert_array_equal(named["stem_conv/kernel"], kernel)
    np.testing.assert_array_equal(named["stem_bn/moving_variance"], np.full(4, 3.0))


def test_files_written_by_keras(tmp_path):
    """Keras 3 itself writes .weights.h5 and legacy .h5; both read to the same tensors."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, name="fc")(x)
    model = keras.Model(inp, x)
    model.get_layer("bn").moving_mean.assign(np.arange(4, dtype=np.float32))
    model.save_weights(str(tmp_path / "m.weights.h5"))
    with h5py.File(tmp_path / "m.h5", "w") as f:
        legacy.save_weights_to_hdf5_group(f, model)
    old = read_weights(str(tmp_path / "m.h5"))
    new = keras3_var_names(read_weights(str(tmp_path / "m.weights.h5")))
    assert set(old) == set(new) == {
        "c1/kernel", "c1/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance",
        "dw/kernel", "dw/bias", "fc/kernel", "fc/bias",
    }  # fmt: skip
    for k in old:
        np.testing.assert_array_equal(old[k], new[k], err_msg=k)
    layer = model.get_layer("dw")
    np.testing.assert_array_equal(new["dw/kernel"], np.asarray(layer.kernel))
    np.testing.assert_array_equal(new["bn/moving_mean"], np.arange(4))
