"""Weight-file readers that never execute code from the file: ``read_weights(path)``.

The format is recognised from the file's first bytes, not its name:

============================  =========================================================
first bytes                   format and reader
============================  =========================================================
``PK\\x03\\x04``               zip: ``torch.save`` (default since torch 1.6)
``\\x80`` + protocol 2..5      pickle: legacy ``torch.save`` (magic number first)
``\\x89HDF\\r\\n\\x1a\\n``      HDF5: Keras application ``.h5`` or Keras 3 ``.weights.h5`` (h5py)
u64 length + ``{``            safetensors (``safetensors.numpy``)
============================  =========================================================

Every reader returns ``{name: np.ndarray}`` (arrays owned by the caller, not memory maps of the
file) and every floating-point tensor is checked to be finite. Any failure (truncated, corrupt,
a pickle global outside the tensor-rebuilding set, NaN/Inf) raises :class:`WeightsError`.

Names are those of the source framework: PyTorch state-dict keys (``conv1.weight``); Keras weight
names without the ``:0`` suffix (``stem_conv/kernel``); Keras 3 ``.weights.h5`` files store no
variable names, so their tensors are ``<layer>/<index>`` in the layer's variable order
(``stem_bn/0`` is gamma), see :func:`jaxcls.weights.layout.keras3_var_names`.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import ml_dtypes
import numpy as np

from jaxcls.weights import sandbox, torch_pickle
from jaxcls.weights.errors import WeightsError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
# Keys under which training scripts nest the state dict in a checkpoint dict.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema")
# safetensors dtypes that safetensors.numpy does not map (numpy has no bfloat16).
_EXTRA_SAFETENSORS_DTYPES = {"BF16": np.dtype(ml_dtypes.bfloat16)}


def sniff_format(path: str) -> str:
    """'torch_zip' | 'torch_legacy' | 'hdf5' | 'safetensors', from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e}") from e
    if head.startswith(ZIP_MAGIC):
        return "torch_zip"
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch_legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + n <= size:
            return "safetensors"
        if head[8:9] == b"{":
            raise WeightsError(f"{path}: safetensors header runs past the end (truncated file)")
    raise WeightsError(
        f"{path}: unrecognised weight file (first bytes {head[:8]!r}); expected .safetensors, "
        "a torch.save .pth/.pt/.bin, or a Keras .h5"
    )


def read_weights(path: str | os.PathLike, *, key: str | None = None) -> dict[str, np.ndarray]:
    """Reads every tensor of a weight file into ``{name: array}``, checking they are finite.

    Args:
      path: a ``.safetensors``, ``.pth``/``.pt``/``.bin`` (zip or legacy torch.save), Keras
        application ``.h5`` or Keras 3 ``.weights.h5`` file.
      key: for torch checkpoints that hold more than a state dict (``{'state_dict': ...,
        'optimizer': ...}``), the entry to read; by default the first of ``STATE_DICT_KEYS``
        present, else the whole object.

    Returns:
      Source-framework names mapped to numpy arrays (a DataParallel ``module.`` prefix removed).

    Raises:
      WeightsError: the file is unreadable, truncated, corrupt, disallowed, or holds NaN/Inf.
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        weights = read_safetensors(path)
    elif fmt == "hdf5":
        weights = read_keras_h5(path)
    else:
        reader = torch_pickle.read_zip if fmt == "torch_zip" else torch_pickle.read_legacy
        weights = torch_state_dict(reader(path), key=key, path=path)
    if not weights:
        raise WeightsError(f"{path}: no tensors found")
    check_finite(weights, path)
    return weights


def check_finite(weights: dict[str, np.ndarray], path: str = "") -> None:
    """Raises WeightsError naming every floating-point tensor that holds NaN or Inf."""
    bad = []
    for name, arr in weights.items():
        if arr.dtype.kind == "f" or arr.dtype == ml_dtypes.bfloat16:
            values = arr.astype(np.float32) if arr.dtype == ml_dtypes.bfloat16 else arr
            if not np.all(np.isfinite(values)):
                n = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
                bad.append(f"{name} ({n} non-finite of {arr.size})")
    if bad:
        raise WeightsError(f"{path}: refused, weights contain NaN/Inf: " + ", ".join(bad))


# ---------------------------------------------------------------------------------------- torch
def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    # Anything else (epoch numbers, strings, None) is metadata, not a weight.


def torch_state_dict(obj: Any, *, key: str | None = None, path: str = "") -> dict[str, np.ndarray]:
    """The flat state dict inside an unpickled torch object (see :func:`read_weights`)."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
            raise WeightsError(f"{path}: no entry {key!r} in the checkpoint (it has {keys})")
        obj = obj[key]
    elif isinstance(obj, dict):
        nested = [k for k in STATE_DICT_KEYS if isinstance(obj.get(k), dict)]
        if nested and not any(isinstance(v, np.ndarray) for v in obj.values()):
            obj = obj[nested[0]]
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


# ----------------------------------------------------------------------------------- safetensors
def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Reads a .safetensors file with safetensors' numpy API (bfloat16 through ml_dtypes)."""
    import safetensors
    import safetensors.numpy

    try:
        return {k: np.array(v) for k, v in safetensors.numpy.load_file(path).items()}
    except KeyError:  # A dtype safetensors.numpy does not know (bfloat16): map it ourselves.
        pass
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError: corrupt or truncated.
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({e})") from e
    try:
        with open(path, "rb") as f:
            flat = safetensors.deserialize(f.read())
    except Exception as e:  # noqa: BLE001
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({e})") from e
    out = {}
    for name, view in flat:
        dtype = _EXTRA_SAFETENSORS_DTYPES.get(view["dtype"])
        if dtype is None:
            try:
                dtype = np.dtype(safetensors.numpy._getdtype(view["dtype"]))
            except KeyError:
                raise WeightsError(
                    f"{path}: tensor {name} has unsupported dtype {view['dtype']}"
                ) from None
        out[name] = np.frombuffer(view["data"], dtype).reshape(view["shape"]).copy()
    return out


def safetensors_metadata(path: str) -> dict[str, str]:
    """The free-form ``__metadata__`` of a safetensors header (no tensor is read)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return dict(header.get("__metadata__") or {})


# ---------------------------------------------------------------------------------------- keras
def _dataset(ds: Any, name: str, path: str) -> np.ndarray:
    import h5py

    if not isinstance(ds, h5py.Dataset):
        raise WeightsError(f"{path}: {name} is not a dataset")
    if ds.dtype.kind not in "fiub":
        raise WeightsError(f"{path}: {name} has non-numeric dtype {ds.dtype}")
    return np.array(ds[()])


def _read_legacy_keras(group: Any, path: str) -> dict[str, np.ndarray]:
    """Keras 2 application files and Keras ``model.save('x.h5')``: layer_names -> weight_names."""
    out: dict[str, np.ndarray] = {}
    for layer in (_text(n) for n in group.attrs["layer_names"]):
        if layer not in group:
            raise WeightsError(f"{path}: layer {layer} is listed but missing")
        g = group[layer]
        for wname in (_text(n) for n in g.attrs.get("weight_names", [])):
            if wname not in g:
                raise WeightsError(f"{path}: weight {layer}/{wname} is listed but missing")
            name = wname[:-2] if wname.endswith(":0") else wname
            if not name.startswith(f"{layer}/"):
                name = f"{layer}/{name}"
            if name in out:
                raise WeightsError(f"{path}: weight {name} appears twice")
            out[name] = _dataset(g[wname], f"{layer}/{wname}", path)
    return out


def _read_keras3(group: Any, prefix: str, path: str, out: dict[str, np.ndarray]) -> None:
    """Keras 3 ``.weights.h5``: ``layers/<key>/vars/<i>``, the real layer name in vars' attrs."""
    import h5py

    for key, child in group.items():
        if key == "optimizer" and not prefix:
            continue
        if not isinstance(child, h5py.Group):
            continue
        if key == "vars":
            for i in sorted(child, key=int):
                out[f"{prefix.rstrip('/')}/{i}" if prefix else f"vars/{i}"] = _dataset(
                    child[i], f"{prefix}vars/{i}", path
                )
            continue
        if key == "layers":
            _read_keras3(child, prefix, path, out)
            continue
        name = key
        if "vars" in child and "name" in child["vars"].attrs:
            name = _text(child["vars"].attrs["name"])
        _read_keras3(child, f"{prefix}{name}/", path, out)


def _text(v: Any) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def read_keras_h5(path: str) -> dict[str, np.ndarray]:
    """`read_keras_h5_here` in a child process (`sandbox`): the HDF5 C library can hang or crash
    on a damaged file (found by tools/fuzz.py); that becomes a WeightsError here."""
    return sandbox.call(read_keras_h5_here, path, what="HDF5")


def read_keras_h5_here(path: str) -> dict[str, np.ndarray]:
    """Reads a Keras ``.h5`` weight file as plain HDF5 datasets (never ``load_model``).

    Handles the Keras 2 application layout (root attribute ``layer_names``, each layer group's
    ``weight_names``), full-model ``.h5`` files (the same under ``model_weights``) and Keras 3
    ``.weights.h5`` files (``layers/<layer>/vars/<i>``).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs:
                return _read_legacy_keras(f, path)
            if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
                return _read_legacy_keras(f["model_weights"], path)
            if "layers" in f or "vars" in f:
                out: dict[str, np.ndarray] = {}
                _read_keras3(f, "", path, out)
                return out
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError on damage.
        raise WeightsError(f"{path}: corrupt or truncated HDF5 file ({e})") from e
    raise WeightsError(f"{path}: HDF5 file in no Keras weight layout (no layer_names, no layers/)")
