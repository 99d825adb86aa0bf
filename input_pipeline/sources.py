"""Data sources: list a dataset's examples as (key, label, class name) and load one example.

A source is the first arrow of the data flow (see design.md): it only *lists* examples and loads the
raw bytes (or in-memory array) of one of them; decoding and preprocessing happen later in the grain
pipeline. Sources are chosen by the ``config.dataset`` spec string:

* ``'digits'`` -- scikit-learn's 1,797 real 8x8 handwritten digits, in memory (tests, demos).
* ``'folder:/path/dir'`` -- one sub-folder per class (the ImageNet and Keras
  ``image_dataset_from_directory`` layout); the class is the folder name, optionally renamed by
  a class map (``'animals10'`` maps Animals-10's Italian folder names to English).
* ``'csv:/path/file.csv'`` -- a manifest with columns ``path,label[,class_name]`` (see `CsvSource`).
* ``'tfds:name'`` -- a prepared TensorFlow Datasets dataset read through ``tfds.data_source``.

Keys are record indices (int) for in-memory sources and source-relative paths (str) for files, so
the split CSVs written to a workdir stay valid if the data folder moves.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from input_pipeline import decode

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

# Animals-10 (Kaggle, alessiocorrado99/animals10) ships Italian folder names.
ANIMALS10 = {
    "cane": "dog",
    "cavallo": "horse",
    "elefante": "elephant",
    "farfalla": "butterfly",
    "gallina": "chicken",
    "gatto": "cat",
    "mucca": "cow",
    "pecora": "sheep",
    "ragno": "spider",
    "scoiattolo": "squirrel",
}
CLASS_MAPS = {"animals10": ANIMALS10}


class SourceError(ValueError):
    """A dataset cannot be listed: missing folder, no classes, a class without images, ..."""


class Source(abc.ABC):
    """Abstract base class: ``keys``, ``labels`` and ``class_names`` list the examples; `load` reads one.

    Subclasses fill ``spec`` (the config string), ``keys`` (list of int or str), ``labels``
    (int64 array) and ``class_names``.
    """

    spec: str
    keys: list
    labels: np.ndarray
    class_names: list[str]
    # True when `load` returns encoded bytes that may be corrupt (files); False for decoded arrays.
    is_file_based: bool = False
    key_column: str = "index"

    def __len__(self) -> int:
        return len(self.keys)

    @abc.abstractmethod
    def load(self, key):
        """Returns the raw example: encoded ``bytes`` (files) or a ``uint8 [H, W, C]`` array."""

    def describe(self, key) -> str:
        """A human-readable location for a key (full path for files), used in error messages."""
        return str(key)

    def fingerprint(self) -> str:
        """A short hash of the class names and the full (key, label) listing."""
        return manifest_hash(self.keys, self.labels, self.class_names)

    def __repr__(self) -> str:
        # Grain validates restored iterators against repr(data source): encode the listing's hash
        # so a changed file list is refused instead of silently reshuffled.
        return f"{type(self).__name__}(spec={self.spec!r}, n={len(self)}, sha={self.fingerprint()})"


def manifest_hash(keys: Sequence, labels: Sequence[int], class_names: Sequence[str]) -> str:
    """sha256 (first 16 hex digits) over class names and every (key, label) pair, in order."""
    h = hashlib.sha256()
    h.update("\x1f".join(class_names).encode())
    for key, label in zip(keys, labels):
        h.update(f"\x1e{key}\x1f{int(label)}".encode())
    return h.hexdigest()[:16]


class DirectInput(Source):
    """Inputs handed over one by one (predict tools, the web app): the key is the raw input."""

    spec = "direct"
    keys: list = []
    labels = np.zeros(0, np.int64)
    class_names: list[str] = []

    def load(self, key):
        return key

    def describe(self, key) -> str:
        return "<input>"


class DigitsSource(Source):
    """scikit-learn's digits: 1,797 real 8x8 grayscale digits (values 0..16), classes '0'..'9'.

    Pixel values are scaled to 0..255 (x * 255 / 16, rounded) and repeated over 3 channels so the
    image looks like every other RGB source to the pipeline.
    """

    def __init__(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        self.images = np.repeat(images[..., None], 3, axis=-1)
        self.labels = digits.target.astype(np.int64)
        self.keys = list(range(len(self.labels)))
        self.class_names = [str(i) for i in range(10)]
        self.spec = "digits"

    def load(self, key):
        return self.images[int(key)]


class FolderSource(Source):
    """Class-per-folder images: ``root/<class>/**/<image files>``.

    Classes are the non-hidden sub-folders of ``root``, renamed by ``class_map`` when given and
    sorted by their final name (labels are indices into that sorted list). Files are found
    recursively inside each class folder, by extension (case-insensitive, `IMAGE_EXTENSIONS`);
    hidden files are ignored. Whether a file really decodes is checked later (`scan_bad_files`).
    """

    is_file_based = True
    key_column = "path"

    def __init__(self, root: str, class_map: Mapping[str, str] | str | None = None):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.spec = f"folder:{root}"
        mapping = _resolve_class_map(class_map)
        if not os.path.exists(self.root):
            raise SourceError(f"dataset folder does not exist: {self.root}")
        if not os.path.isdir(self.root):
            raise SourceError(f"dataset path is not a folder: {self.root}")
        folders = sorted(
            e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")
        )
        if not folders:
            raise SourceError(
                f"no class folders in {self.root}: expected one sub-folder per class "
                "(root/<class>/<image files>)"
            )
        names = {f: mapping.get(f, f) for f in folders}
        clashes = _duplicates(names.values())
        if clashes:
            raise SourceError(f"several folders map to the same class name: {clashes}")
        self.class_names = sorted(names.values())
        index = {name: i for i, name in enumerate(self.class_names)}
        keys, labels, empty = [], [], []
        for folder in folders:
            files = list_images(os.path.join(self.root, folder))
            if not files:
                empty.append(folder)
            keys += [f"{folder}/{f}" for f in files]
            labels += [index[names[folder]]] * len(files)
        if empty:
            raise SourceError(
                f"class folder(s) without image files in {self.root}: {empty} "
                f"(recognised extensions: {sorted(IMAGE_EXTENSIONS)})"
            )
        self.keys = keys
        self.labels = np.asarray(labels, dtype=np.int64)

    def describe(self, key) -> str:
        return os.path.join(self.root, key)

    def load(self, key):
        return decode.read_file(self.describe(key))


class CsvSource(Source):
    """Images listed in a CSV manifest with a header row: ``path,label[,class_name]``.

    Relative paths are relative to the CSV's folder. ``label`` is either an integer class index or
    a class name. With integer labels and a ``class_name`` column, names come from that column;
    with integer labels and no names, classes are named by their index. With name labels, classes
    are the sorted distinct names.
    """

    is_file_based = True
    key_column = "path"

    def __init__(self, csv_path: str):
        import csv

        self.csv_path = os.path.abspath(os.path.expanduser(csv_path))
        self.root = os.path.dirname(self.csv_path)
        self.spec = f"csv:{csv_path}"
        if not os.path.isfile(self.csv_path):
            raise SourceError(f"CSV manifest does not exist: {self.csv_path}")
        with open(self.csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise SourceError(f"CSV manifest has no rows: {self.csv_path}")
        missing = {"path", "label"} - set(rows[0])
        if missing:
            raise SourceError(
                f"CSV manifest {self.csv_path} lacks column(s) {sorted(missing)}; "
                f"found {list(rows[0])}, expected path,label[,class_name]"
            )
        self.keys = [r["path"] for r in rows]
        raw = [r["label"].strip() for r in rows]
        if all(_is_int(v) for v in raw):
            labels = [int(v) for v in raw]
            if min(labels) < 0:
                raise SourceError(f"negative label in {self.csv_path}")
            names = {}
            for r, label in zip(rows, labels):
                name = (r.get("class_name") or str(label)).strip()
                if names.setdefault(label, name) != name:
                    raise SourceError(
                        f"label {label} has two class names in {self.csv_path}: "
                        f"{names[label]!r} and {name!r}"
                    )
            self.class_names = [names.get(i, str(i)) for i in range(max(labels) + 1)]
        else:
            self.class_names = sorted(set(raw))
            index = {n: i for i, n in enumerate(self.class_names)}
            labels = [index[v] for v in raw]
        self.labels = np.asarray(labels, dtype=np.int64)

    def describe(self, key) -> str:
        return os.path.join(self.root, key)

    def load(self, key):
        return decode.read_file(self.describe(key))


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursive, sorted, hidden entries skipped), relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
    return found


def make_source(spec: str, config=None) -> Source:
    """Builds the source named by a ``config.dataset`` spec string (see the module docstring).

    ``config`` is the ``config.data`` ConfigDict (or None); it supplies ``class_map`` for folder
    sources and ``tfds_data_dir`` (and ``tfds_image_key``, ``tfds_label_key``) for tfds sources.
    """
    get = (lambda k, d=None: config.get(k, d)) if config is not None else (lambda k, d=None: d)
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return DigitsSource()
    if kind == "folder" and arg:
        return FolderSource(arg, class_map=get("class_map"))
    if kind == "csv" and arg:
        return CsvSource(arg)
    if kind == "tfds" and arg:
        from input_pipeline import tfds_source

        return tfds_source.TfdsSource(
            arg,
            data_dir=get("tfds_data_dir") or None,
            image_key=get("tfds_image_key", "image") or "image",
            label_key=get("tfds_label_key", "label") or "label",
        )
    raise SourceError(
        f"unknown dataset spec {spec!r}; expected 'digits', 'folder:/path/dir', "
        "'csv:/path/file.csv' or 'tfds:name'"
    )


def _resolve_class_map(class_map) -> dict[str, str]:
    if not class_map:
        return {}
    if isinstance(class_map, str) and class_map.lstrip().startswith("{"):
        try:
            class_map = json.loads(class_map)
        except json.JSONDecodeError as e:
            raise SourceError(f"class_map is not valid JSON ({e}): {class_map!r}") from None
    if isinstance(class_map, str):
        if class_map not in CLASS_MAPS:
            raise SourceError(
                f"unknown class_map {class_map!r}; known: {sorted(CLASS_MAPS)}, "
                'or a JSON object such as \'{"cane": "dog"}\''
            )
        return dict(CLASS_MAPS[class_map])
    return {str(k): str(v) for k, v in dict(class_map).items()}


def _duplicates(values) -> list:
    seen, dup = set(), set()
    for v in values:
        (dup if v in seen else seen).add(v)
    return sorted(dup)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
