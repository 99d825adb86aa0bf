"""Stratified seeded splits, manifests as CSV, train-split rebalancing and class weights.

A `Manifest` is the list of examples of one split: source keys (record index or source-relative
path), integer labels, and the class names they index. Splits are made once per workdir and written
to ``{workdir}/splits/{train,val,test}.csv`` so a run can be audited and reproduced; a resumed run
reads them back instead of splitting again (see `pipeline.build_data`).

Splits come from fractions (`stratified_split`) or from the dataset itself (`own_splits`, for
``config.data.split='source'``), then are subsampled per class (`subsample`); `make_splits` runs
these from ``config.data``.

Rebalancing and class weights only ever touch the train split: validation and test numbers must
describe the real class distribution.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from jaxcls import files

SPLITS = ("train", "val", "test")
SOURCE_SPLIT = "source"  # config.data.split value: keep the dataset's own splits.
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


def parse_split(value) -> str | tuple[float, float, float]:
    """``config.data.split`` -> ``'source'`` or checked (train, val, test) fractions.

    Accepts ``'source'`` (also ``('source',)``, what ``--config.data.split=source`` gives for the
    default tuple field), three numbers, or a string of three numbers (``'0.8,0.1,0.1'``).
    """
    if isinstance(value, str) or (len(value) == 1 and isinstance(value[0], str)):
        text = (value if isinstance(value, str) else value[0]).strip().strip("()[] ")
        if text == SOURCE_SPLIT:
            return SOURCE_SPLIT
        try:
            value = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"config.data.split must be 'source' or (train, val, test) fractions, got {text!r}"
            ) from None
    return check_fractions(value)


def make_splits(
    manifest: Manifest, cfg, split_names: Sequence[str] | None = None
) -> tuple[dict[str, Manifest], Manifest]:
    """The train/val/test manifests of a run from ``config.data`` (``cfg``), and the unused rest.

    ``cfg.split`` is fractions (`stratified_split`) or ``'source'``: the dataset's own splits,
    ``split_names[i]`` being the split of row ``i`` (`own_splits`). Then, per class and seeded by
    ``cfg.split_seed``: ``cfg.train_fraction`` of each train class is kept, and every split is
    capped at ``cfg.max_per_class`` examples per class (0 = no cap), see `subsample`. Examples
    left out by either (or in a source split that is not train/val/test) form the unused
    manifest, which the trainer writes beside the splits so a resume can account for them.
    """
    seed = int(cfg.split_seed)
    mode = parse_split(cfg.split)
    if mode == SOURCE_SPLIT:
        if split_names is None:
            raise ValueError("config.data.split='source' needs the source's own splits")
        parts = own_splits(manifest, split_names, val_fraction=cfg.val_fraction, seed=seed)
    else:
        parts = stratified_split(manifest, mode, seed)
    fraction, cap = float(cfg.train_fraction), int(cfg.max_per_class)
    parts = {
        s: subsample(
            m, fraction=fraction if s == "train" else 1.0, max_per_class=cap, seed=seed + i
        )
        for i, (s, m) in enumerate(parts.items())
    }
    used = {k for m in parts.values() for k in m.keys}
    return parts, manifest.subset([i for i, k in enumerate(manifest.keys) if k not in used])


def own_splits(
    manifest: Manifest, split_names: Sequence[str], *, val_fraction: float, seed: int
) -> dict[str, Manifest]:
    """The dataset's own splits: rows named 'train', 'val', 'test' go to that split (other names
    are left out). Without any 'val' row, ``val_fraction`` of each train class is carved out as
    validation (stratified, seeded); 0 leaves val empty."""
    names = np.asarray(list(split_names), dtype=object)
    if len(names) != len(manifest):
        raise ValueError(f"{len(names)} split names for {len(manifest)} examples")
    parts = {s: manifest.subset(np.flatnonzero(names == s)) for s in SPLITS}
    if len(parts["train"]) == 0:
        raise ValueError("config.data.split='source': the dataset's train split is empty")
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"config.data.val_fraction must be in [0, 1), got {val_fraction}")
    if len(parts["val"]) == 0 and val_fraction > 0:
        carved = stratified_split(parts["train"], (1.0 - val_fraction, val_fraction, 0.0), seed)
        parts["train"], parts["val"] = carved["train"], carved["val"]
    return parts


def subsample(
    manifest: Manifest, *, fraction: float = 1.0, max_per_class: int = 0, seed: int = 0
) -> Manifest:
    """Keeps ``round(n_c * fraction)`` (at least 1) examples of each class ``c``, at most
    ``max_per_class`` (0 = no cap), chosen at random with ``seed``; source order is kept."""
    fraction, cap = float(fraction), int(max_per_class)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"config.data.train_fraction must be in (0, 1], got {fraction}")
    if cap < 0:
        raise ValueError(f"max_per_class must be >= 0 (0 = all), got {cap}")
    if fraction == 1.0 and (cap == 0 or len(manifest) == 0 or manifest.class_counts().max() <= cap):
        return manifest
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(manifest.class_names)):
        positions = np.flatnonzero(manifest.labels == label)
        if len(positions) == 0:
            continue
        n = max(1, int(round(len(positions) * fraction)))
        n = min(n, cap) if cap else n
        chosen.append(rng.permutation(positions)[:n])
    return manifest.subset(np.sort(np.concatenate(chosen)))


def write_manifest(path: str, manifest: Manifest) -> None:
    """Writes ``key_column,label,class_name`` rows; atomically (temp file + rename)."""
    names = manifest.class_names
    rows = [[key, int(label), names[label]] for key, label in zip(manifest.keys, manifest.labels)]
    _write_csv(path, [manifest.key_column, "label", "class_name"], rows)


def _write_csv(path: str, header: list, rows: list) -> None:
    """A CSV written whole and atomically (`jaxcls.files.atomic_open`; ``path`` may be local or
    a gs:// URL), its folder created first."""
    files.makedirs(os.path.dirname(path))
    with files.atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_manifest(path: str, class_names: Sequence[str]) -> Manifest:
    """Reads a CSV written by `write_manifest`, checking labels and names against ``class_names``.

    Raises:
      ValueError: naming the file and row when the CSV disagrees with the class names (the
        dataset's classes changed since the splits were written).
    """
    with epath.Path(path).open() as f:
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
    rows = [[item["key"], item["path"], item["reason"]] for item in skipped]
    _write_csv(path, ["key", "path", "reason"], rows)


def read_skipped(path: str) -> list[dict]:
    """Reads `write_skipped`'s file; a missing file means no bad files."""
    if not epath.Path(path).exists():
        return []
    with epath.Path(path).open() as f:
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
