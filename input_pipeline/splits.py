"""Stratified seeded splits, manifests as CSV, train-split rebalancing and class weights.

A `Manifest` is the list of examples of one split: source keys (record index or source-relative
path), integer labels, and the class names they index. Splits are made once per workdir and written
to ``{workdir}/splits/{train,val,test}.csv`` so a run can be audited and reproduced; a resumed run
reads them back instead of splitting again (see `pipeline.build_data`).

Rebalancing and class weights only ever touch the train split: validation and test numbers must
describe the real class distribution.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "val", "test")
REBALANCE_MODES = ("none", "down", "up", "mean")


@dataclasses.dataclass(repr=False)
class Manifest:
    """The examples of one split. ``keys[i]`` has label ``labels[i]`` (index into class_names)."""

    keys: list
    labels: np.ndarray
    class_names: list[str]
    key_column: str = "index"  # 'index' for in-memory sources, 'path' for files.

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.keys) != len(self.labels):
            raise ValueError(f"{len(self.keys)} keys but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Manifest(n={len(self)}, classes={len(self.class_names)}, key={self.key_column})"

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, shape [num_classes]."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def subset(self, positions: Sequence[int]) -> Manifest:
        positions = np.asarray(positions, dtype=np.int64)
        return Manifest(
            [self.keys[i] for i in positions],
            self.labels[positions],
            self.class_names,
            self.key_column,
        )


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validates (train, val, test) fractions: three non-negative numbers summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0:
        raise ValueError(
            f"config.data.split must be (train, val, test) fractions with train > 0, "
            f"got {fractions}"
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"config.data.split fractions must sum to 1, got {fractions}")
    return fractions


def stratified_split(
    manifest: Manifest, fractions: Sequence[float], seed: int
) -> dict[str, Manifest]:
    """Splits ``manifest`` into train/val/test with each class divided by ``fractions``.

    For every class (in label order) the examples are permuted with one seeded generator;
    ``round(n * f_val)`` go to val, ``round(n * f_test)`` to test and the rest (at least one) to
    train. Each split keeps the source order of its examples, so the CSVs are easy to read and
    diff. The same manifest, fractions and seed always give the same splits.
    """
    _, f_val, f_test = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for label in range(len(manifest.class_names)):
        positions = np.flatnonzero(manifest.labels == label)
        n = len(positions)
        if n == 0:
            continue
        positions = rng.permutation(positions)
        n_val = int(round(n * f_val))
        n_test = int(round(n * f_test))
        while n_val + n_test >= n and n_val + n_test > 0:  # Keep at least one train example.
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        parts["val"].append(positions[:n_val])
        parts["test"].append(positions[n_val : n_val + n_test])
        parts["train"].append(positions[n_val + n_test :])
    return {
        s: manifest.subset(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64))
        for s, p in parts.items()
    }


def write_manifest(path: str, manifest: Manifest) -> None:
    """Writes ``key_column,label,class_name`` rows; atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([manifest.key_column, "label", "class_name"])
        for key, label in zip(manifest.keys, manifest.labels):
            writer.writerow([key, int(label), manifest.class_names[label]])
    os.replace(tmp, path)


def read_manifest(path: str, class_names: Sequence[str]) -> Manifest:
    """Reads a CSV written by `write_manifest`, checking labels and names against ``class_names``.

    Raises:
      ValueError: naming the file and row when the CSV disagrees with the class names (the
        dataset's classes changed since the splits were written).
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or len(header) < 3 or header[1:3] != ["label", "class_name"]:
            raise ValueError(f"{path}: not a split manifest (header {header})")
        key_column = header[0]
        keys, labels = [], []
        for row_number, row in enumerate(reader, start=2):
            key, label, name = row[0], int(row[1]), row[2]
            if not 0 <= label < len(class_names) or class_names[label] != name:
                raise ValueError(
                    f"{path} line {row_number}: label {label} {name!r} does not match the "
                    f"dataset's classes {list(class_names)}; the dataset changed since the "
                    "splits were written (use a new workdir or delete its splits/ folder)"
                )
            keys.append(int(key) if key_column == "index" else key)
            labels.append(label)
    return Manifest(keys, np.asarray(labels, np.int64), list(class_names), key_column)


def write_skipped(path: str, skipped: Sequence[dict]) -> None:
    """Writes the bad-file list (``key,path,reason``) next to the split manifests."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "path", "reason"])
        for item in skipped:
            writer.writerow([item["key"], item["path"], item["reason"]])
    os.replace(tmp, path)


def read_skipped(path: str) -> list[dict]:
    """Reads `write_skipped`'s file; a missing file means no bad files."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [
            {"key": r["key"], "path": r["path"], "reason": r["reason"]} for r in csv.DictReader(f)
        ]


def rebalance(manifest: Manifest, mode: str, seed: int) -> Manifest:
    """Resamples the train manifest so classes are (more) balanced.

    Modes:
      'none': unchanged.
      'down': every class is sampled down to the smallest class count (without replacement).
      'up': every class keeps all its examples and is topped up to the largest count by drawing
        extra copies with replacement.
      'mean': every class is brought to the mean class count (down or up as above).

    Classes with no examples stay empty. Seeded: the same inputs give the same manifest.
    """
    if mode not in REBALANCE_MODES:
        raise ValueError(f"unknown rebalance mode {mode!r}; known: {list(REBALANCE_MODES)}")
    if mode == "none" or len(manifest) == 0:
        return manifest
    counts = manifest.class_counts()
    present = counts[counts > 0]
    target = {
        "down": int(present.min()),
        "up": int(present.max()),
        "mean": int(round(present.mean())),
    }[mode]
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(counts)):
        positions = np.flatnonzero(manifest.labels == label)
        if len(positions) == 0:
            continue
        if len(positions) >= target:
            chosen.append(np.sort(rng.choice(positions, size=target, replace=False)))
        else:
            extra = rng.choice(positions, size=target - len(positions), replace=True)
            chosen.append(np.sort(np.concatenate([positions, extra])))
    return manifest.subset(np.concatenate(chosen))


def class_weights(manifest: Manifest) -> np.ndarray:
    """'Balanced' class weights n / (k * n_c) (as in scikit-learn), float32 [num_classes].

    Weighting the loss by these makes every class contribute equally in expectation. Classes
    absent from the manifest get weight 0 (they never appear in a batch anyway).
    """
    counts = manifest.class_counts().astype(np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)
