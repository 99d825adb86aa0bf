r"""Benchmarks the training input pipeline: images/sec with 0, 1 and 2 grain workers, beside
torchvision's ImageFolder + DataLoader doing the same work on the same files.

  python tools/bench_pipeline.py DATA_DIR [--workers=0,1,2] [--batches=20] [--size=224]
      [--out=bench_pipeline.md] [--torch_python=/path/to/python-with-torchvision]
  python tools/bench_pipeline.py --synthetic=800 /tmp/bench_data      # make a photo-like folder first

Work per image, both sides: decode JPEG/PNG -> random resized crop to SIZE -> horizontal flip ->
normalise with the ImageNet mean/std -> float32; batches of 64. The first batch of each
configuration is not timed (worker start-up). torchvision runs in ``--torch_python`` (default: this
interpreter) when torch and torchvision import there; otherwise its rows say why they are missing.
Prints a table (and writes it as Markdown to --out) with the ratio jaxcls / torchvision per worker
count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import benchutil  # noqa: E402

TRAIN_PIPELINE = "decode|random_resized_crop({size})|flip_lr|normalize('imagenet')"

TORCH_SCRIPT = r"""
import json, sys, time
import torch
from torchvision import datasets, transforms
root, size, batch, batches, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
tf = transforms.Compose([
    transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = datasets.ImageFolder(root, transform=tf)
loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0)
it = iter(loader); n = 0
next(it)
t0 = time.perf_counter()
while n < batches:
    try:
        x, y = next(it)
    except StopIteration:
        it = iter(loader); continue
    n += 1
print(json.dumps({"images_per_sec": n * batch / (time.perf_counter() - t0), "torch": torch.__version__}))
"""


def make_synthetic(root: str, n: int, seed: int = 0) -> None:
    """Photo-like JPEGs (smooth gradients + noise, 500x375 and 375x500) in 10 class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (375, 500) if i % 3 else (500, 375)
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (c + 1) / w + yy / h) * 80 for c in range(3)], -1)
        img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        d = os.path.join(root, f"class_{i % 10}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img).save(os.path.join(d, f"img_{i:05d}.jpg"), quality=90)


def bench_jaxcls(root: str, size: int, batch: int, batches: int, workers: int) -> float:
    import ml_collections

    from input_pipeline import pipeline

    config = ml_collections.ConfigDict(
        {
            "dataset": f"folder:{root}",
            "seed": 0,
            "data": {
                "image_size": size,
                "split": (0.9, 0.05, 0.05),
                "split_seed": 0,
                "train_pipeline": TRAIN_PIPELINE.format(size=size),
                "eval_pipeline": f"decode|resize({size})",
                "num_workers": workers,
                "num_threads": 2 if workers == 0 else 1,
                "prefetch": 2,
                "scan": False,
            },
        }
    )
    data = pipeline.build_data(config, None)
    it = iter(pipeline.train_dataset(data, config, batch_size=batch, seed=0))
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        assert b["image"].shape == (batch, size, size, 3)
    rate = batches * batch / (time.perf_counter() - t0)
    if hasattr(it, "close"):
        it.close()
    return rate


def bench_torch(python: str, root: str, size: int, batch: int, batches: int, workers: int):
    out, error = benchutil.run_reference(python, TORCH_SCRIPT, root, size, batch, batches, workers)
    return (out["images_per_sec"], f"torch {out['torch']}") if out else (None, error)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data_dir")
    p.add_argument(
        "--synthetic", type=int, default=0, help="first write N synthetic JPEGs into DATA_DIR"
    )
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--torch_python", default=sys.executable)
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--out", default="bench_pipeline.md")
    args = p.parse_args(argv)
    if args.synthetic:
        make_synthetic(args.data_dir, args.synthetic)
    if not os.path.isdir(args.data_dir):
        print(f"bench_pipeline: error: {args.data_dir} is not a directory", file=sys.stderr)
        return 2
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        ours = bench_jaxcls(args.data_dir, args.size, args.batch_size, args.batches, w)
        theirs, note = (None, "skipped (--no_torch)")
        if not args.no_torch:
            theirs, note = bench_torch(
                args.torch_python, args.data_dir, args.size, args.batch_size, args.batches, w
            )
        ratio = ours / theirs if theirs else None
        rows.append((w, ours, theirs, ratio, note))
        print(
            f"workers={w}: jaxcls {ours:.1f} img/s, torchvision "
            f"{f'{theirs:.1f} img/s' if theirs else 'n/a'}"
            f"{f', ratio {ratio:.2f}x' if ratio else ''} ({note})",
            flush=True,
        )
    lines = [
        f"Input pipeline, {args.data_dir}: decode + random_resized_crop({args.size}) + flip + normalize, "
        f"batch {args.batch_size}, {args.batches} timed batches, {os.cpu_count()} CPU cores",
        "",
        "| workers | jaxcls (grain) img/s | torchvision DataLoader img/s | ratio |",
        "|---|---|---|---|",
    ]
    for w, ours, theirs, ratio, note in rows:
        lines.append(
            f"| {w} | {ours:.1f} | {f'{theirs:.1f}' if theirs else f'n/a ({note})'} | "
            f"{f'{ratio:.2f}x' if ratio else '-'} |"
        )
    benchutil.write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
