r"""Writes a preprocessed copy of a class-per-folder dataset, plus the copy's catalogue.

  python tools/preprocess.py SRC_DIR --out=DST_DIR [--size=224] [--resize=pad|stretch|crop]
      [--quality=90] [--format=jpeg|png] [--class_map=animals10] [--pipeline='decode|...']

Every readable image is decoded as training does (EXIF orientation applied, alpha composited on
white, CMYK/16-bit converted), resized (aspect kept and padded by default), and saved as an RGB file
under DST_DIR/<class>/ with the same base name. Unreadable files are skipped and listed in
DST_DIR/skipped.csv. DST_DIR/.catalogue/ (hidden, so the copy's class folders stay the only folders) then holds catalogue.csv, summary.json and plots of the
copy. Train on the copy with ``--config.dataset=folder:DST_DIR`` to compare with the raw data.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipeline import decode, pp, sources  # noqa: E402
from tools import catalogue as catalogue_tool  # noqa: E402

RESIZE = {
    "pad": "resize_pad({s})",
    "stretch": "resize({s})",
    "crop": "resize_small({s})|center_crop({s})",
}


def build_pipeline(size: int, resize: str, pipeline: str | None) -> pp.Preprocess:
    if pipeline:
        return pp.parse(pipeline)
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
    tmp = dst + ".tmp"
    Image.fromarray(image).save(
        tmp, format=fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {})
    )
    os.replace(tmp, dst)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--resize", default="pad", help="pad (keep aspect, pad), stretch, or crop")
    p.add_argument(
        "--pipeline",
        default=None,
        help="custom uint8 pipeline, e.g. 'decode|resize_pad(224)|clahe(2.0, 8)'",
    )
    p.add_argument("--format", default="jpeg", choices=["jpeg", "png"])
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--class_map", default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    try:
        source = sources.FolderSource(args.src, class_map=args.class_map)
        prep = build_pipeline(args.size, args.resize, args.pipeline)
    except ValueError as e:
        print(f"preprocess: error: {e}", file=sys.stderr)
        return 2
    if os.path.abspath(args.out) == os.path.abspath(source.root):
        print("preprocess: error: --out must differ from the source directory", file=sys.stderr)
        return 2
    ext = ".jpg" if args.format == "jpeg" else ".png"
    jobs = []
    for key, label in zip(source.keys, source.labels.tolist()):
        stem = os.path.splitext(os.path.basename(key))[0]
        sub = os.path.dirname(key).split("/", 1)[1] if "/" in os.path.dirname(key) else ""
        dst = os.path.join(args.out, source.class_names[label], sub, stem + ext)
        jobs.append((source.describe(key), dst))
    if len({d for _, d in jobs}) != len(jobs):
        print("preprocess: error: two source files map to the same output name", file=sys.stderr)
        return 2
    t0 = time.time()
    skipped = []
    with ThreadPoolExecutor(max_workers=max(1, args.threads)) as pool:
        futures = [pool.submit(convert_one, s, d, prep, args.format, args.quality) for s, d in jobs]
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
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "skipped.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(skipped)
    print(
        f"wrote {len(jobs) - len(skipped)} images to {args.out} ({prep.spec}); skipped {len(skipped)}"
    )
    for src, reason in skipped:
        print(f"  SKIPPED {src}: {reason}")
    return catalogue_tool.main(
        [args.out, f"--out={os.path.join(args.out, '.catalogue')}", f"--threads={args.threads}"]
    )


if __name__ == "__main__":
    sys.exit(main())
