"""``'array_record:/dir'``: a dataset packed into ArrayRecord shards by ``tools/to_array_record.py``.

Large datasets read file by file spend their time opening small files (worse on network disks and
``gs://`` buckets); an ArrayRecord shard is one big file with an index, read by random access
through grain's ``ArrayRecordDataSource``. The folder holds::

    images-00000-of-0000N.array_record   the records (one per image, see `encode_record`)
    manifest.csv                         key,label,class_name,record (every record, in order)
    classes.txt                          the class names, one a line (label = line number)
    skipped.csv                          files of the original dataset that did not decode
    info.json                            where it came from, counts, record format

Keys are the original dataset's keys (paths relative to its folder or CSV), so a run on the packed
dataset makes the same train/val/test split as a run on the original, and the pipeline's ops,
resume and per-host sharding work unchanged. The files were scanned when the folder was written,
so this source is not scanned again.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from input_pipeline.sources.base import Source, SourceError

MANIFEST = "manifest.csv"
CLASSES = "classes.txt"
SKIPPED = "skipped.csv"
INFO = "info.json"
SHARD_PATTERN = "images-{index:05d}-of-{count:05d}.array_record"
FORMAT = "jaxcls-image-v1"  # A JSON header line {"key", "label"}, b"\n", the encoded image bytes.


def encode_record(key, label: int, data: bytes) -> bytes:
    """One record: ``{"key": ..., "label": ...}`` as JSON, a newline, then the file's bytes."""
    return json.dumps({"key": key, "label": int(label)}).encode() + b"\n" + bytes(data)


def decode_record(record: bytes) -> tuple[dict, bytes]:
    """``(header, image bytes)`` of a record written by `encode_record`."""
    header, _, data = record.partition(b"\n")
    return json.loads(header), data


def shard_names(count: int) -> list[str]:
    return [SHARD_PATTERN.format(index=i, count=count) for i in range(count)]


class ArrayRecordSource(Source):
    """The examples of a ``tools/to_array_record.py`` folder; `load` returns the image's bytes."""

    key_column = "path"

    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.spec = f"array_record:{root}"
        info_path = os.path.join(self.root, INFO)
        if not os.path.isfile(info_path):
            raise SourceError(
                f"{self.root} is not an ArrayRecord dataset (no {INFO}); write one with "
                "python tools/to_array_record.py DATA_DIR --out=DIR"
            )
        with open(info_path) as f:
            info = json.load(f)
        if info.get("format") != FORMAT:
            raise SourceError(
                f"{info_path}: record format {info.get('format')!r}, expected {FORMAT}"
            )
        with open(os.path.join(self.root, CLASSES)) as f:
            self.class_names = [line.rstrip("\n") for line in f if line.strip()]
        keys, labels, records = [], [], []
        with open(os.path.join(self.root, MANIFEST), newline="") as f:
            for row in csv.DictReader(f):
                keys.append(row["key"])
                labels.append(int(row["label"]))
                records.append(int(row["record"]))
        self.keys = keys
        self.labels = np.asarray(labels, np.int64)
        self._record_of = dict(zip(keys, records))
        self.paths = [os.path.join(self.root, n) for n in shard_names(int(info["shards"]))]
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise SourceError(f"ArrayRecord shard(s) missing: {', '.join(missing[:3])}")
        self._reader = None

    def _records(self):
        if self._reader is None:  # Opened lazily, in the process (grain worker) that reads.
            import grain

            self._reader = grain.sources.ArrayRecordDataSource(self.paths)
        return self._reader

    def load(self, key) -> bytes:
        header, data = decode_record(self._records()[self._record_of[key]])
        if header["key"] != key:
            raise SourceError(f"{self.root}: record for {key!r} holds {header['key']!r}")
        return data

    def describe(self, key) -> str:
        return f"{key} (in {self.root})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None
        return state
