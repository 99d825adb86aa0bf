"""Dataset inspection: find files that do not decode, and catalogue a folder of images.

`scan_bad_files` is what `pipeline.build_data` runs on a folder/CSV source before splitting, so a
corrupt download is listed and left out instead of crashing a worker mid-epoch. `catalogue` is the
scan behind the ``tools/catalogue`` command (`catalogue_report` writes its table, summary and
plots): one row per file (format, mode, size, whether it decodes) and a summary (class counts and
imbalance, formats, modes, sizes, bad files) -- what a user should know about a dataset before
training on it (Animals-10, for instance, mixes JPEG and PNG, RGB and RGBA, and is unbalanced about
5:1).
"""

from __future__ import annotations

import collections
import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from input_pipeline import decode, sources


def scan_bad_files(source: sources.Source, num_threads: int = 2) -> list[dict]:
    """Fully decodes every file of a file-based source; returns the ones that fail.

    Each entry is ``{'key': source key, 'path': full path, 'reason': why}``, in source order.
    Decoding runs in threads (Pillow releases the GIL while decoding).
    """

    def check(key):
        try:
            decode.decode_image(source.load(key))
        except decode.DecodeError as e:
            return {"key": key, "path": source.describe(key), "reason": e.reason}
        return None

    with ThreadPoolExecutor(max_workers=max(1, int(num_threads))) as pool:
        results = list(pool.map(check, source.keys))
    return [r for r in results if r is not None]


def inspect_file(path: str) -> dict:
    """Header facts (format, mode, width, height, bytes, EXIF orientation) plus a full decode."""
    row = {
        "path": path,
        "format": "",
        "mode": "",
        "width": 0,
        "height": 0,
        "bytes": 0,
        "orientation": 1,
        "ok": True,
        "reason": "",
    }
    try:
        data = decode.read_file(path)
        row["bytes"] = len(data)
        try:
            with Image.open(io.BytesIO(data)) as image:
                row.update(format=image.format or "", mode=image.mode)
                row["width"], row["height"] = image.size
                row["orientation"] = int(image.getexif().get(0x0112, 1) or 1)
        except Exception:  # noqa: BLE001 -- the full decode below gives the reason.
            pass
        decode.decode_image(data, path=path)
    except decode.DecodeError as e:
        row.update(ok=False, reason=e.reason)
    return row


def catalogue(data_dir: str, class_map=None, num_threads: int = 2) -> tuple[list[dict], dict]:
    """Catalogues a class-per-folder dataset.

    Args:
      data_dir: the dataset root (``root/<class>/<files>``).
      class_map: optional folder -> class name map, or ``'animals10'``.
      num_threads: decoding threads.

    Returns:
      ``(rows, summary)``: ``rows`` has one dict per image file (`inspect_file`'s fields plus
      ``key``, ``class_name``, ``label``); ``summary`` has ``num_files``, ``num_classes``,
      ``class_counts`` (name -> n), ``imbalance`` (largest / smallest class), ``formats``,
      ``modes``, ``width`` and ``height`` (min/median/max of decodable files), ``num_bad``,
      ``status`` (status -> n), ``bad`` (list of {path, status, reason}) and ``other_files`` (files
      ignored for their extension). Each row also gets a ``status`` (see `status_of`).
    """
    source = sources.FolderSource(data_dir, class_map=class_map)
    paths = [source.describe(k) for k in source.keys]
    with ThreadPoolExecutor(max_workers=max(1, int(num_threads))) as pool:
        rows = list(pool.map(inspect_file, paths))
    for row, key, label in zip(rows, source.keys, source.labels.tolist()):
        row.update(
            key=key, label=label, class_name=source.class_names[label], status=status_of(row)
        )
    counts = collections.Counter(r["class_name"] for r in rows)
    good = [r for r in rows if r["ok"]]
    widths = np.array([r["width"] for r in good]) if good else np.zeros(1)
    heights = np.array([r["height"] for r in good]) if good else np.zeros(1)
    summary = {
        "root": source.root,
        "num_files": len(rows),
        "num_classes": len(source.class_names),
        "class_counts": {name: counts.get(name, 0) for name in source.class_names},
        "imbalance": max(counts.values()) / max(1, min(counts.values())),
        "formats": dict(collections.Counter(r["format"] or "?" for r in rows)),
        "modes": dict(collections.Counter(r["mode"] or "?" for r in rows)),
        "rotated_exif": sum(r["orientation"] not in (0, 1) for r in rows),
        "width": _stats(widths),
        "height": _stats(heights),
        "num_bad": len(rows) - len(good),
        "status": dict(collections.Counter(r["status"] for r in rows)),
        "bad": [
            {"path": r["path"], "status": r["status"], "reason": r["reason"]}
            for r in rows
            if not r["ok"]
        ],
        "other_files": _other_files(source.root),
    }
    return rows, summary


def status_of(row: dict) -> str:
    """One word for a catalogue row: ok, empty, not an image, truncated, too large or corrupt."""
    if row["ok"]:
        return "ok"
    reason = row["reason"].lower()
    if reason.startswith("empty"):
        return "empty"
    if reason.startswith("not an image"):
        return "not an image"
    if "truncat" in reason:
        return "truncated"
    if "too many pixels" in reason or "too large" in reason:
        return "too large"
    return "corrupt"


def _stats(values: np.ndarray) -> dict:
    return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}


def _other_files(root: str) -> int:
    """Non-hidden files under the class folders whose extension is not an image extension."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if dirpath == root:
            continue
        n += sum(
            not f.startswith(".") and os.path.splitext(f)[1].lower() not in sources.IMAGE_EXTENSIONS
            for f in filenames
        )
    return n
