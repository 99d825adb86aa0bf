"""A preprocessed copy of a class-per-folder dataset, plus the copy's catalogue (the library half
of ``tools/preprocess.py``).

Every readable image is decoded as training does (`decode`), run through a uint8 pipeline (by
default a resize to ``size``, aspect kept and padded) and saved as an RGB file under
``OUT/<class>/`` with the same base name; unreadable files are skipped and listed in
``OUT/skipped.csv``. ``OUT/.catalogue/`` then holds the copy's catalogue (`catalogue_report`).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from input_pipeline import catalogue_report, decode, pp, sources
from input_pipeline.catalogue_report import UsageError
from jaxcls import files

RESIZE = {
    "pad": "resize_pad({s})",
    "stretch": "resize({s})",
    "crop": "resize_small({s})|center_crop({s})",
}


def build_pipeline(size: int, resize: str, pipeline: str | None) -> pp.Preprocess:
    """The uint8 pipeline of the copy: ``pipeline`` when given, else decode and ``resize``.
    A copy is made once, so its pipeline must be deterministic (e.g. ``blur``, not a random
    augmentation)."""
    if pipeline:
        prep = pp.parse(pipeline)
        if prep.is_random:
            raise ValueError(
                f"--pipeline {pipeline!r} has random ops {prep.random_ops}; a preprocessed copy "
                "needs fixed ops (e.g. blur(1.0) or gaussian_blur(1.0, p=1) for a fixed blur)"
            )
        return prep
    if resize not in RESIZE:
        raise ValueError(f"--resize must be one of {sorted(RESIZE)}, got {resize!r}")
    return pp.parse("decode|" + RESIZE[resize].format(s=size))


def convert_one(src: str, dst: str, prep: pp.Preprocess, fmt: str, quality: int) -> str | None:
    """Converts one file; returns the reason it was skipped, or None."""
    try:
        image = prep(decode.read_file(src))
    except decode.DecodeError as e:
        return e.reason
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"the pipeline must end with uint8 RGB images (no value_range/normalize); got "
            f"{image.dtype}{image.shape}"
        )
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with files.atomic_open(dst, "wb") as f:
        Image.fromarray(image).save(
            f, format=fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {})
        )
    return None


def plan(source: sources.FolderSource, out: str, fmt: str) -> list[tuple[str, str]]:
    """``(source file, output file)`` per image; UsageError if two files map to one output."""
    ext = ".jpg" if fmt == "jpeg" else ".png"
    jobs = []
    for key, label in zip(source.keys, source.labels.tolist()):
        stem = os.path.splitext(os.path.basename(key))[0]
        sub = os.path.dirname(key).split("/", 1)[1] if "/" in os.path.dirname(key) else ""
        dst = os.path.join(out, source.class_names[label], sub, stem + ext)
        jobs.append((source.describe(key), dst))
    if len({d for _, d in jobs}) != len(jobs):
        raise UsageError("two source files map to the same output name")
    return jobs


def convert_all(
    jobs: list[tuple[str, str]], prep: pp.Preprocess, fmt: str, quality: int, threads: int
) -> list[tuple[str, str]]:
    """Runs `convert_one` on every job in ``threads`` threads, printing progress every 500
    files; returns ``(source file, reason)`` of the skipped ones."""
    t0 = time.time()
    skipped = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = [pool.submit(convert_one, s, d, prep, fmt, quality) for s, d in jobs]
        for i, (fut, (src, _)) in enumerate(zip(futures, jobs), start=1):
            reason = fut.result()
            if reason is not None:
                skipped.append((src, reason))
            if i % 500 == 0 or i == len(jobs):
                dt = time.time() - t0
                rate = i / max(dt, 1e-9)
                print(
                    f"  {i}/{len(jobs)} files, {rate:.0f} files/s, ETA {(len(jobs) - i) / rate:.0f} s",
                    flush=True,
                )
    return skipped


def write_skipped(out: str, skipped: list[tuple[str, str]]) -> None:
    """``OUT/skipped.csv``: path and reason of every file left out."""
    os.makedirs(out, exist_ok=True)
    with files.atomic_open(os.path.join(out, "skipped.csv"), newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(skipped)


def _catalogue_copy(out: str, threads: int) -> int:
    """The copy's catalogue in ``OUT/.catalogue``; its errors are reported as the catalogue
    command reports them."""
    try:
        return catalogue_report.write_report(out, os.path.join(out, ".catalogue"), threads=threads)
    except UsageError as e:
        print(f"catalogue: error: {e}", file=sys.stderr)
        return 2


def preprocess(
    src: str,
    out: str,
    *,
    size: int = 224,
    resize: str = "pad",
    pipeline: str | None = None,
    fmt: str = "jpeg",
    quality: int = 90,
    class_map=None,
    threads: int = 2,
) -> int:
    """Writes the preprocessed copy of ``src`` into ``out`` and catalogues it; prints progress,
    the skipped files and the catalogue's summary. Returns the exit code (0; 2 if the copy cannot
    be catalogued).

    Raises UsageError for an unusable source, pipeline or output folder.
    """
    try:
        source = sources.FolderSource(src, class_map=class_map)
        prep = build_pipeline(size, resize, pipeline)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if os.path.abspath(out) == os.path.abspath(source.root):
        raise UsageError("--out must differ from the source directory")
    jobs = plan(source, out, fmt)
    skipped = convert_all(jobs, prep, fmt, quality, threads)
    write_skipped(out, skipped)
    print(f"wrote {len(jobs) - len(skipped)} images to {out} ({prep.spec}); skipped {len(skipped)}")
    for path, reason in skipped:
        print(f"  SKIPPED {path}: {reason}")
    return _catalogue_copy(out, threads)
