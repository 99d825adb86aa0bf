"""The source contract: a dataset lists examples as (key, label, class name) and loads one.

A source is the first arrow of the data flow (README, Architecture): it only *lists* examples and
loads the raw bytes (or in-memory array) of one of them; decoding and preprocessing happen later in
the grain pipeline. Keys are record indices (int) for in-memory sources and source-relative paths
(str) for files, so the split CSVs written to a workdir stay valid if the data folder moves.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence

import numpy as np

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


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

    def split_of(self, key) -> str:
        """The dataset's own split of ``key`` (``config.data.split='source'``): 'train', 'val',
        'test' or another name of the source's (then unused). Sources without splits raise."""
        raise SourceError(
            f"dataset {self.spec!r} has no splits of its own; config.data.split='source' needs a "
            "tfds dataset or a folder with train/ (valid/ or val/, test/) sub-folders; use "
            "fractions instead, e.g. config.data.split=(0.7, 0.15, 0.15)"
        )

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
