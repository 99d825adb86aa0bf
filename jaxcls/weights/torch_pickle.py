"""Reads PyTorch ``torch.save`` files without torch and without running any code from the file.

``torch.load`` unpickles, and unpickling calls whatever callables the file names: a ``.pth`` can run
``os.system`` (reliability.md; ``weights_only=True`` had CVEs before torch 2.6 and 2.10). Here a
restricted :class:`pickle.Unpickler` resolves only the handful of globals that rebuilding tensors
needs, each to a function of ours that builds a *reference* to storage bytes; anything else (a
callable, a class, a module) is refused with :class:`WeightsError` naming the global before it is
ever called. Storages are mapped to numpy buffers and every tensor view is bounds-checked against
its storage before it is materialised.

Two container formats are handled (see ``torch/serialization.py``):

* **zip** (the default since torch 1.6): ``<root>/data.pkl`` is the pickle; its persistent ids
  ``('storage', StorageType, key, location, numel)`` refer to ``<root>/data/<key>``, raw bytes in
  the byte order named by ``<root>/byteorder`` (little when absent).
* **legacy** (``_use_new_zipfile_serialization=False``): five things back to back on one stream:
  a pickled magic number, the pickled protocol version (1001), a pickled ``sys_info`` dict, the
  pickle of the object (persistent ids ``('storage', StorageType, key, location, numel,
  view_metadata)``), a pickled sorted list of storage keys, then for each key an int64 element count
  followed by that many elements of raw bytes.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

from jaxcls.weights.errors import WeightsError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> element dtype (torch/storage.py's typed storages).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "UntypedStorage": np.dtype(np.uint8),
}
# torch.<dtype> globals (used by _rebuild_tensor_v3) -> numpy dtype.
TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` & co. resolve to: just the element dtype."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A persistent id, resolved to a key; the bytes are attached once they are read."""

    key: str
    dtype: np.dtype
    numel: int
    view: tuple[str, int, int] | None = None  # (view key, element offset, element count).


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: np.dtype


def _check_ints(name: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise WeightsError(f"tensor {name} must be a tuple of non-negative ints, got {values!r}")
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, dtype=None) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise WeightsError(f"tensor rebuilt from a non-storage object {type(storage).__name__}")
    size = _check_ints("size", size)
    stride = _check_ints("stride", stride)
    (offset,) = _check_ints("offset", (storage_offset,))
    if len(size) != len(stride):
        raise WeightsError(f"tensor size {size} and stride {stride} differ in rank")
    return _TensorRef(storage, offset, size, stride, dtype if dtype is not None else storage.dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, meta=None):
    del requires_grad, hooks, meta
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, meta=None):
    del requires_grad, hooks, meta
    if not isinstance(dtype, np.dtype):
        raise WeightsError(f"_rebuild_tensor_v3 with a non-dtype {dtype!r}")
    return _rebuild_tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    del requires_grad, hooks, state
    if not isinstance(data, _TensorRef):
        raise WeightsError(f"Parameter rebuilt from a non-tensor {type(data).__name__}")
    return data


class _OrderedDict(dict):
    """``collections.OrderedDict`` stand-in: a dict that accepts the ``_metadata`` attribute
    (per-module versions) that state dicts carry through pickle's BUILD opcode."""


def _size(*args):
    return tuple(args[0]) if len(args) == 1 else tuple(args)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch", "Size"): _size,
    **{("torch", n): _StorageType(n, d) for n, d in STORAGE_DTYPES.items()},
    **{("torch", n): d for n, d in TORCH_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensor-rebuilding globals, each to a harmless function of this module.

    ``persistent_load`` turns torch's storage ids into :class:`_StorageRef`; ``storages`` collects
    them by key so the caller can attach the bytes afterwards.
    """

    def __init__(self, file, *, legacy: bool):
        super().__init__(file)
        self.legacy = legacy
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsError(
                f"refused: the pickle asks for the global {module}.{name}, which is not needed to "
                "rebuild tensors (the file may be malicious; nothing from it was run)"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsError(f"refused: unexpected persistent id {pid!r:.200}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"refused: storage of type {storage_type!r:.100}")
        (numel,) = _check_ints("storage numel", (numel,))
        key = str(key)
        view = None
        if self.legacy and len(pid) > 5 and pid[5] is not None:
            view_key, view_offset, view_size = pid[5]
            view = (str(view_key), *_check_ints("view", (view_offset, view_size)))
        ref = self.storages.get(key)
        if ref is None:
            ref = _StorageRef(key, storage_type.dtype, numel)
            self.storages[key] = ref
        if view is not None:
            return _StorageRef(view[0], ref.dtype, view[2], view=(key, view[1], view[2]))
        return ref


def _materialise(ref: _TensorRef, buffers: dict[str, np.ndarray]) -> np.ndarray:
    """Copies the tensor out of its storage's bytes after checking it stays inside them."""
    storage, offset = ref.storage, ref.offset
    if storage.view is not None:  # Legacy storage views: a window into the root storage.
        root_key, view_offset, _ = storage.view
        raw = buffers.get(root_key)
        if raw is None:
            raise WeightsError(f"storage {root_key!r} is missing from the file")
        raw = raw[view_offset * storage.dtype.itemsize :]
    else:
        raw = buffers.get(storage.key)
        if raw is None:
            raise WeightsError(f"storage {storage.key!r} is missing from the file")
    itemsize = ref.dtype.itemsize
    n_elems = raw.size // itemsize
    elems = raw[: n_elems * itemsize].view(ref.dtype)
    numel = int(np.prod(ref.size, dtype=np.int64))
    if numel == 0:
        return np.zeros(ref.size, ref.dtype)
    last = offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride))
    if last >= n_elems or numel > n_elems:
        raise WeightsError(
            f"tensor of size {ref.size} at offset {offset} does not fit its storage of {n_elems} "
            "elements (truncated or corrupt file)"
        )
    view = np.lib.stride_tricks.as_strided(
        elems[offset:],
        shape=ref.size,
        strides=tuple(st * itemsize for st in ref.stride),
        writeable=False,
    )
    return np.array(view, copy=True)


def _resolve(obj: Any, buffers: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        return _materialise(obj, buffers)
    if isinstance(obj, dict):
        return {k: _resolve(v, buffers) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(v, buffers) for v in obj)
    return obj


def _unpickle(stream, *, legacy: bool) -> tuple[Any, RestrictedUnpickler]:
    unpickler = RestrictedUnpickler(stream, legacy=legacy)
    try:
        obj = unpickler.load()
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure: corrupt, truncated or hostile.
        raise WeightsError(
            f"cannot unpickle ({type(e).__name__}: {e}); corrupt or truncated?"
        ) from e
    return obj, unpickler


def read_zip(path: str) -> Any:
    """Reads a zip-format ``torch.save`` file; returns the object with tensors as numpy arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise WeightsError(f"{path}: zip file without one <root>/data.pkl (not torch.save)")
            root = pkl[0].rsplit("/", 1)[0]
            order = "little"
            if f"{root}/byteorder" in names:
                order = zf.read(f"{root}/byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise WeightsError(f"{path}: unknown byte order {order!r}")
            obj, unpickler = _unpickle(io.BytesIO(zf.read(pkl[0])), legacy=False)
            buffers = {}
            for key, ref in unpickler.storages.items():
                name = f"{root}/data/{key}"
                if name not in names:
                    raise WeightsError(f"{path}: storage {name} is missing")
                raw = np.frombuffer(zf.read(name), np.uint8)
                if raw.size < ref.numel * ref.dtype.itemsize:
                    raise WeightsError(f"{path}: storage {name} is truncated")
                if order == "big" and ref.dtype.itemsize > 1:  # Swap each element's bytes.
                    size = ref.dtype.itemsize
                    n = raw.size // size
                    raw = raw[: n * size].reshape(n, size)[:, ::-1].reshape(-1).copy()
                buffers[key] = raw
    except WeightsError:
        raise
    # zipfile also raises UnicodeDecodeError (a mangled entry name), NotImplementedError (an
    # unknown compression method) and zlib.error / ValueError (corrupt compressed data): found by
    # tools/fuzz.py.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        UnicodeDecodeError,
        NotImplementedError,
        zlib.error,
        ValueError,
    ) as e:
        raise WeightsError(f"{path}: corrupt or truncated zip ({type(e).__name__}: {e})") from e
    return _resolve(obj, buffers)


def read_legacy(path: str) -> Any:
    """Reads a legacy (non-zip) ``torch.save`` file; returns the object with numpy arrays."""
    with open(path, "rb") as f:
        magic, _ = _unpickle(f, legacy=True)
        if magic != LEGACY_MAGIC_NUMBER:
            raise WeightsError(f"{path}: a pickle, but not a torch.save file (no magic number)")
        protocol, _ = _unpickle(f, legacy=True)
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise WeightsError(f"{path}: unsupported torch legacy protocol {protocol!r}")
        sys_info, _ = _unpickle(f, legacy=True)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise WeightsError(f"{path}: only little-endian legacy torch files are supported")
        obj, unpickler = _unpickle(f, legacy=True)
        keys, _ = _unpickle(f, legacy=True)
        if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
            raise WeightsError(f"{path}: storage key list does not match the pickled tensors")
        buffers = {}
        for key in map(str, keys):
            ref = unpickler.storages[key]
            head = f.read(8)
            if len(head) != 8:
                raise WeightsError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", head)
            if numel < 0 or numel != ref.numel:
                raise WeightsError(
                    f"{path}: storage {key} has {numel} elements, expected {ref.numel}"
                )
            nbytes = numel * ref.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise WeightsError(
                    f"{path}: storage {key} is truncated ({len(raw)}/{nbytes} bytes)"
                )
            buffers[key] = np.frombuffer(raw, np.uint8)
    return _resolve(obj, buffers)
