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

    With ``own_splits`` (``config.data.split='source'``) the root holds the dataset's own splits
    instead: ``root/train/<class>/...`` and optionally ``root/valid/`` (or ``val/``) and
    ``root/test/``, each with class folders; keys are ``'<split folder>/<class>/<file>'`` and
    `split_of` names the split. The classes of ``valid/`` and ``test/`` must be classes of
    ``train/``. Other sub-folders of the root are ignored.
    """

    is_file_based = True
    key_column = "path"

    def __init__(
        self,
        root: str,
        class_map: Mapping[str, str] | str | None = None,
        own_splits: bool = False,
    ):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.spec = f"folder:{root}"
        self.own_splits = bool(own_splits)
        mapping = parse_class_map(class_map)
        if not os.path.exists(self.root):
            raise SourceError(f"dataset folder does not exist: {self.root}")
        if not os.path.isdir(self.root):
            raise SourceError(f"dataset path is not a folder: {self.root}")
        tops = _sub_folders(self.root)
        if not self.own_splits:
            if not tops:
                raise SourceError(
                    f"no class folders in {self.root}: expected one sub-folder per class "
                    "(root/<class>/<image files>)"
                )
            self.class_names, self.keys, self.labels = _list_classes(self.root, tops, mapping)
            return
        split_dirs = [d for d in tops if d in SPLIT_FOLDERS]
        if "train" not in split_dirs or ("val" in split_dirs and "valid" in split_dirs):
            raise SourceError(
                f"config.data.split='source' needs the dataset's own split folders in {self.root}: "
                "train/ and optionally valid/ (or val/) and test/, each with one folder per "
                f"class; found {tops or 'no sub-folders'}"
            )
        per_split = {d: _sub_folders(os.path.join(self.root, d)) for d in split_dirs}
        for d, folders in per_split.items():
            extra = sorted(set(folders) - set(per_split["train"]))
            if not folders or extra:
                raise SourceError(
                    f"{os.path.join(self.root, d)} must hold class folders that are classes of "
                    f"train/ {per_split['train']}; found {folders or 'none'}"
                )
        names, keys, labels = _list_classes(
            os.path.join(self.root, "train"), per_split["train"], mapping
        )
        self.class_names, self.keys, self.labels = names, [], []
        for d in sorted(split_dirs, key=list(SPLIT_FOLDERS).index):
            _, split_keys, split_labels = _list_classes(
                os.path.join(self.root, d), per_split[d], mapping, class_names=names
            )
            self.keys += [f"{d}/{k}" for k in split_keys]
            self.labels.append(split_labels)
        self.labels = np.concatenate(self.labels)

    def split_of(self, key) -> str:
        if not self.own_splits:
            return super().split_of(key)
        return SPLIT_FOLDERS[str(key).partition("/")[0]]

    def describe(self, key) -> str:
        return os.path.join(self.root, key)

    def load(self, key):
        return decode.read_file(self.describe(key))


# The split folders ``config.data.split='source'`` recognises, in listing order -> split name.
SPLIT_FOLDERS = {"train": "train", "valid": "val", "val": "val", "test": "test"}


def _sub_folders(path: str) -> list[str]:
    """The non-hidden sub-folders of ``path``, sorted."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _list_classes(root: str, folders: list[str], mapping: Mapping[str, str], class_names=None):
    """``(class_names, keys, labels)`` of the class folders ``folders`` of ``root``.

    Folder names are renamed by ``mapping``; labels index ``class_names`` (default: the sorted
    renamed folders). Keys are ``'<folder>/<file>'``. A class folder without images is an error.
    """
    names = {f: mapping.get(f, f) for f in folders}
    clashes = _duplicates(names.values())
    if clashes:
        raise SourceError(f"several folders map to the same class name: {clashes}")
    class_names = sorted(names.values()) if class_names is None else list(class_names)
    index = {name: i for i, name in enumerate(class_names)}
    keys, labels, empty = [], [], []
    for folder in folders:
        files = list_images(os.path.join(root, folder))
        if not files:
            empty.append(folder)
        keys += [f"{folder}/{f}" for f in files]
        labels += [index[names[folder]]] * len(files)
    if empty:
        raise SourceError(
            f"class folder(s) without image files in {root}: {empty} "
            f"(recognised extensions: {sorted(IMAGE_EXTENSIONS)})"
        )
    return class_names, keys, np.asarray(labels, dtype=np.int64)


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
