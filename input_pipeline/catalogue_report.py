"""A dataset's catalogue on disk: table, summary and plots (the library half of
``tools/catalogue.py``, also run by `input_pipeline.preprocess` on the copy it writes).

`write_report` scans a class-per-folder dataset (`catalogue.catalogue`) and writes
``OUT/catalogue.csv`` (one row per file: path, class, format, mode, channels, size, bytes, status,
reason), ``OUT/summary.json`` (class counts, format x channels table, most common widths and
heights, bad files), ``OUT/class_counts.png`` and ``OUT/sizes.png``, then prints the summary.
Plots use matplotlib directly (input_pipeline does not import jaxcls).
"""

from __future__ import annotations

import collections
import csv
import os
import time

from input_pipeline import catalogue
from jaxcls import files


class UsageError(ValueError):
    """A dataset command was given something it cannot work on (the message says what); the
    command line reports it as ``<tool>: error: <message>`` with exit code 2."""


MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "P": 1,
    "LA": 2,
    "PA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "RGBA": 4,
    "CMYK": 4,
    "I": 1,
    "I;16": 1,
    "I;16B": 1,
    "I;16L": 1,
    "F": 1,
}
COLUMNS = [
    "path",
    "class_name",
    "label",
    "format",
    "mode",
    "channels",
    "width",
    "height",
    "bytes",
    "orientation",
    "status",
    "reason",
]


def channels(mode: str) -> int | str:
    """The number of channels of a Pillow mode, ``'?'`` when unknown."""
    return MODE_CHANNELS.get(mode, "?") if mode else "?"


def write_table(rows: list[dict], path: str) -> None:
    """``catalogue.csv``: `COLUMNS` of every row."""
    with files.atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, channels=channels(r["mode"])))


def extend_summary(rows: list[dict], summary: dict, top: int = 10) -> dict:
    """Adds the format x channels table and the most common widths and heights."""
    table = collections.Counter((r["format"] or "?", str(channels(r["mode"]))) for r in rows)
    summary["format_x_channels"] = {f"{f} x {c}": n for (f, c), n in sorted(table.items())}
    good = [r for r in rows if r["status"] == "ok"]
    summary["common_widths"] = collections.Counter(r["width"] for r in good).most_common(top)
    summary["common_heights"] = collections.Counter(r["height"] for r in good).most_common(top)
    summary["common_sizes"] = [
        [f"{w}x{h}", n]
        for (w, h), n in collections.Counter((r["width"], r["height"]) for r in good).most_common(
            top
        )
    ]
    return summary


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_class_counts(summary: dict, path: str) -> None:
    plt = _pyplot()
    names = list(summary["class_counts"])
    counts = [summary["class_counts"][n] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 4))
    ax.bar(range(len(names)), counts, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("images")
    ax.set_title(
        f"Images per class ({summary['num_files']} files, imbalance {summary['imbalance']:.2f})"
    )
    fig.tight_layout()
    with files.atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def _plot_sizes(rows: list[dict], path: str) -> None:
    plt = _pyplot()
    good = [r for r in rows if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter([r["width"] for r in good], [r["height"] for r in good], s=6, alpha=0.5)
    axes[0].set_xlabel("width (px)")
    axes[0].set_ylabel("height (px)")
    axes[0].set_title("Image sizes")
    axes[1].hist([r["width"] * r["height"] / 1e6 for r in good], bins=40, color="tab:green")
    axes[1].set_xlabel("megapixels")
    axes[1].set_ylabel("images")
    axes[1].set_title("Size distribution")
    fig.tight_layout()
    with files.atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def plot(rows: list[dict], summary: dict, out: str) -> list[str]:
    """Writes ``class_counts.png`` and ``sizes.png`` into ``out``; returns their paths."""
    paths = [os.path.join(out, "class_counts.png"), os.path.join(out, "sizes.png")]
    _plot_class_counts(summary, paths[0])
    _plot_sizes(rows, paths[1])
    return paths


def print_summary(summary: dict) -> None:
    """The summary in a few lines: counts per class, statuses, formats, sizes, bad files."""
    print(
        f"{summary['num_files']} files, {summary['num_classes']} classes, "
        f"{summary['num_bad']} bad, {summary['other_files']} non-image files ignored "
        f"({summary['seconds']} s, {summary['num_files'] / max(summary['seconds'], 1e-9):.0f} files/s)"
    )
    width = max(len(n) for n in summary["class_counts"])
    for name, n in summary["class_counts"].items():
        print(f"  {name:<{width}} {n:>7}")
    print("status:", ", ".join(f"{k} {v}" for k, v in summary["status"].items()))
    print(
        "format x channels:",
        ", ".join(f"{k}: {v}" for k, v in summary["format_x_channels"].items()),
    )
    print("most common sizes:", ", ".join(f"{s} ({n})" for s, n in summary["common_sizes"][:5]))
    for bad in summary["bad"]:
        print(f"  BAD {bad['status']}: {bad['path']} ({bad['reason']})")


def write_report(data_dir: str, out: str, *, class_map=None, threads: int = 2) -> int:
    """Catalogues ``data_dir`` into ``out`` (table, summary, plots) and prints the summary and the
    files written. Returns the exit code (0).

    Raises UsageError when ``data_dir`` is not a directory or not a class-per-folder dataset.
    """
    if not os.path.isdir(data_dir):
        raise UsageError(f"{data_dir} is not a directory")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    try:
        rows, summary = catalogue.catalogue(data_dir, class_map=class_map, num_threads=threads)
    except ValueError as e:
        raise UsageError(str(e)) from e
    summary = extend_summary(rows, summary)
    summary["seconds"] = round(time.time() - t0, 2)
    write_table(rows, os.path.join(out, "catalogue.csv"))
    files.write_json(os.path.join(out, "summary.json"), summary)
    plots = plot(rows, summary, out)
    print_summary(summary)
    written = [os.path.join(out, "catalogue.csv"), os.path.join(out, "summary.json"), *plots]
    print("wrote", ", ".join(written))
    return 0
