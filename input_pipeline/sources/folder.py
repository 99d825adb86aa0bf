"""Sources of the user's own files and the built-in digits.

* ``'digits'`` -- scikit-learn's 1,797 real 8x8 handwritten digits, in memory (tests, demos).
* ``'folder:/path/dir'`` -- one sub-folder per class (the ImageNet and Keras
  ``image_dataset_from_directory`` layout); the class is the folder name, optionally renamed by
  a class map (``'animals10'`` maps Animals-10's Italian folder names to English).
* ``'csv:/path/file.csv'`` -- a manifest with columns ``path,label[,class_name]`` (see `CsvSource`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from input_pipeline import decode
from input_pipeline.sources.base import IMAGE_EXTENSIONS, Source, SourceError
from input_pipeline.sources.class_maps import parse_class_map


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
        mapping = parse_class_map(class_map)
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
