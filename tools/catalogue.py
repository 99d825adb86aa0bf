r"""Catalogues a class-per-folder image dataset: one row per file, a summary, and plots.

  python tools/catalogue.py DATA_DIR --out=DIR [--class_map=animals10] [--threads=2]

Writes DIR/catalogue.csv (path, class, format, mode, channels, width, height, bytes, status:
ok / corrupt / truncated / not an image / empty / too large, reason), DIR/summary.json (class counts,
format x channels table, most common widths and heights, bad files), DIR/class_counts.png and
DIR/sizes.png, and prints the summary. The trainer runs the same decode check on folder datasets and
skips (and lists) the files this tool marks as bad.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline import catalogue  # noqa: E402

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
    return MODE_CHANNELS.get(mode, "?") if mode else "?"


def write_table(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
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


def plot(rows: list[dict], summary: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
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
    paths.append(os.path.join(out, "class_counts.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

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
    paths.append(os.path.join(out, "sizes.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--class_map", default=None, help="'animals10' (Italian -> English folder names)"
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        print(f"catalogue: error: {args.data_dir} is not a directory", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    try:
        rows, summary = catalogue.catalogue(
            args.data_dir, class_map=args.class_map, num_threads=args.threads
        )
    except ValueError as e:
        print(f"catalogue: error: {e}", file=sys.stderr)
        return 2
    summary = extend_summary(rows, summary)
    summary["seconds"] = round(time.time() - t0, 2)
    write_table(rows, os.path.join(args.out, "catalogue.csv"))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plots = plot(rows, summary, args.out)
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
    print(
        "wrote",
        ", ".join(
            [
                os.path.join(args.out, "catalogue.csv"),
                os.path.join(args.out, "summary.json"),
                *plots,
            ]
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
