"""The training input pipeline's images/sec with 0, 1 and 2 grain workers, beside torchvision's
ImageFolder + DataLoader doing the same work on the same files (the library half of
``tools/bench_pipeline.py``).

Work per image, both sides: decode JPEG/PNG -> random resized crop -> horizontal flip -> normalise
with the ImageNet mean/std -> float32. The first ``warmup`` batches of each configuration are not
timed: worker start-up, and the burst of batches every reader thread or worker made at once before
the first one came out (timed, those would count work done before the clock started).
torchvision runs in another interpreter (`TORCH_SCRIPT` through `common.run_reference`:
torch and torchvision, no jaxcls); where it cannot, its rows say why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import numpy as np

from jaxcls import files
from jaxcls.benchmark import common

TRAIN_PIPELINE = "decode|random_resized_crop({size})|flip_lr|normalize('imagenet')"

TORCH_SCRIPT = r"""
import json, sys, time
import torch
from torchvision import datasets, transforms
root, size, batch, batches, workers, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(1)
tf = transforms.Compose([
    transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
    transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
ds = datasets.ImageFolder(root, transform=tf)
loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                     drop_last=True, persistent_workers=workers > 0)
it = iter(loader); n = 0
for _ in range(warmup):
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


def make_synthetic(
    root: str, n: int, seed: int = 0, photo_size: tuple[int, int] = (500, 375)
) -> None:
    """Photo-like JPEGs (smooth gradients + noise) in 10 class folders, ``photo_size`` (width,
    height) landscape and every third one portrait (500x375 and 375x500 by default)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = photo_size[::-1] if i % 3 else photo_size
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (c + 1) / w + yy / h) * 80 for c in range(3)], -1)
        img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        d = os.path.join(root, f"class_{i % 10}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img).save(os.path.join(d, f"img_{i:05d}.jpg"), quality=90)


def available_memory() -> int | None:
    """Bytes of memory free now (Linux), else the machine's physical memory, else None."""
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            continue
    return None


def warm_file_cache(
    paths: Iterable[str], limit_bytes: int | None = None, every_s: float = 10.0
) -> dict:
    """Reads every file under ``paths`` (folders walked) once and throws the bytes away, so that
    the files are in the OS page cache before anything is timed: otherwise the first
    configuration measured reads them from disk and every later one from memory (one run each,
    0 workers, after dropping the page cache: 624 img/s in the first round and 690 in the second
    without this read, 765 and 748 with it). Reads nothing when the files come to more than
    ``limit_bytes`` (default: half the memory free now), which the cache could not hold.
    Files it cannot read are counted (``'unreadable'``) and left for the pipelines to report. A
    read that takes longer than ``every_s`` prints a line with its rate and ETA that often.
    Returns ``{'files', 'bytes', 'seconds', 'read', 'unreadable'}``."""
    names = files.files_under(paths)
    total = sum(os.path.getsize(f) for f in names)
    if limit_bytes is None:
        free = available_memory()
        limit_bytes = free // 2 if free else total
    read = total <= limit_bytes
    result = {"files": len(names), "bytes": total, "seconds": 0.0, "read": read, "unreadable": 0}
    if read:
        t0, chunk, done = time.perf_counter(), bytearray(1 << 20), 0
        last = t0
        for name in names:
            try:
                with open(name, "rb") as f:
                    while n := f.readinto(chunk):
                        done += n
            except OSError:
                result["unreadable"] += 1
            now = time.perf_counter()
            if now - last >= every_s:
                last, rate = now, done / max(now - t0, 1e-9)
                print(
                    f"page cache: {done / 2**20:.0f} of {total / 2**20:.0f} MB read, "
                    f"{rate / 2**20:.0f} MB/s, ETA {(total - done) / max(rate, 1.0):.0f} s",
                    flush=True,
                )
        result["seconds"] = time.perf_counter() - t0
    return result


def bench_jaxcls(
    root: str, size: int, batch: int, batches: int, workers: int, spec: str = "", warmup: int = 1
) -> float:
    """Images/sec of jaxcls' training pipeline on folder ``root`` (or the dataset ``spec``, e.g.
    'array_record:DIR' packed from it) with ``workers`` workers, after ``warmup`` batches."""
    from input_pipeline import pipeline
    from jaxcls import config_base

    config = config_base.base_config()  # The trainer's defaults for every field not set here.
    config.dataset = spec or f"folder:{root}"
    config.seed = 0
    config.data.update(
        {
            "image_size": size,
            "split": (0.9, 0.05, 0.05),
            "split_seed": 0,
            "train_pipeline": TRAIN_PIPELINE.format(size=size),
            "eval_pipeline": f"decode|resize({size})",
            "num_workers": workers,
            # The trainer's reader threads in one process; one per worker process.
            "num_threads": config.data.num_threads if workers == 0 else 1,
            "scan": False,
        }
    )
    data = pipeline.build_data(config, None)
    it = iter(pipeline.train_dataset(data, config, batch_size=batch, seed=0))
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        assert b["image"].shape == (batch, size, size, 3)
    rate = batches * batch / (time.perf_counter() - t0)
    if hasattr(it, "close"):
        it.close()
    return rate


def bench_torch(
    python: str, root: str, size: int, batch: int, batches: int, workers: int, warmup: int = 1
):
    """torchvision's ``(images/sec, version)``, or ``(None, why not)``."""
    out, error = common.run_reference(
        python, TORCH_SCRIPT, root, size, batch, batches, workers, warmup
    )
    return (out["images_per_sec"], f"torch {out['torch']}") if out else (None, error)


def _bench_workers(
    w, data_dir, size, batch_size, batches, torch_python, no_torch, spec="", warmup=1
):
    steal = (common.StealMeter(), common.StealMeter())  # jaxcls's, torchvision's
    with steal[0]:
        ours = bench_jaxcls(data_dir, size, batch_size, batches, w, spec, warmup)
    theirs, note = (None, "skipped (--no_torch)")
    if not no_torch:
        with steal[1]:
            theirs, note = bench_torch(torch_python, data_dir, size, batch_size, batches, w, warmup)
    ratio = ours / theirs if theirs else None
    steal_pct = (steal[0].percent, steal[1].percent if theirs else None)
    print(
        f"workers={w}: jaxcls {ours:.1f} img/s, torchvision "
        f"{f'{theirs:.1f} img/s' if theirs else 'n/a'}"
        f"{f', ratio {ratio:.2f}x' if ratio else ''} ({note}; CPU steal {steal_text(steal_pct)})",
        flush=True,
    )
    return w, ours, theirs, ratio, note, steal_pct


def median_known(values: list) -> float | None:
    """The median of the values that are not None; None when none is known."""
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def steal_text(steal_pct: tuple) -> str:
    """``'a% / b%'``: the share of CPU time the host took while each side ran (``-`` unknown)."""
    return " / ".join("-" if p is None else f"{p:.0f}%" for p in steal_pct)


def run(
    data_dir: str,
    *,
    synthetic: int = 0,
    photo_size: tuple[int, int] = (500, 375),
    rounds: int = 1,
    workers: Iterable[int] = (0, 1, 2),
    batches: int = 20,
    warmup: int = 8,
    batch_size: int = 64,
    size: int = 224,
    torch_python: str = "",
    no_torch: bool = False,
    out: str = "bench_pipeline.md",
    array_record: str = "",
) -> int:
    """Writes ``synthetic`` JPEGs of ``photo_size`` into ``data_dir`` first (when > 0), benchmarks
    every worker count ``rounds`` times (jaxcls and torchvision alternating), prints the table of
    medians (the best worker count of each side last) and writes it to ``out``; returns 0. Raises
    UsageError when ``data_dir`` is not a directory."""
    if synthetic:
        make_synthetic(data_dir, synthetic, photo_size=photo_size)
    if not os.path.isdir(data_dir):
        raise common.UsageError(f"{data_dir} is not a directory")
    spec = f"array_record:{array_record}" if array_record else ""
    warm = warm_file_cache([data_dir] + ([array_record] if array_record else []))
    mb = warm["bytes"] / 2**20
    if warm["read"]:
        print(
            f"read {warm['files']} files ({mb:.1f} MB) into the page cache in "
            f"{warm['seconds']:.1f} s, before timing anything"
            + (f" ({warm['unreadable']} could not be read)" if warm["unreadable"] else ""),
            flush=True,
        )
    else:
        print(
            f"did not read the {warm['files']} files ahead ({mb:.1f} MB, more than half the free "
            "memory): the first configuration measured may read them from disk",
            flush=True,
        )
    workers = list(workers)
    runs = {w: [] for w in workers}
    for r in range(rounds):
        if rounds > 1:
            print(f"round {r + 1}/{rounds}", flush=True)
        for w in workers:
            runs[w].append(
                _bench_workers(
                    w, data_dir, size, batch_size, batches, torch_python, no_torch, spec, warmup
                )
            )
    rows = []
    for w in workers:
        ours = float(np.median([run[1] for run in runs[w]]))
        theirs = median_known([run[2] for run in runs[w]])
        steal = tuple(median_known([run[5][side] for run in runs[w]]) for side in (0, 1))
        rows.append((w, ours, theirs, ours / theirs if theirs else None, runs[w][-1][4], steal))
    lines = [
        f"Input pipeline, {f'array_record:{array_record} (packed from ' if array_record else ''}"
        f"{data_dir}{')' if array_record else ''}: decode + random_resized_crop({size}) + flip + normalize, "
        f"batch {batch_size}, {batches} timed batches after {warmup}, {os.cpu_count()} CPU cores"
        + (f"; medians of {rounds} rounds, sides alternating" if rounds > 1 else "")
        + "; CPU steal: the share of all CPU time the virtual machine's host took away while "
        "each side ran",
        "",
        "| workers | jaxcls (grain) img/s | torchvision DataLoader img/s | ratio "
        "| CPU steal jaxcls / torchvision |",
        "|---|---|---|---|---|",
    ]
    for w, ours, theirs, ratio, note, steal in rows:
        lines.append(
            f"| {w} | {ours:.1f} | {f'{theirs:.1f}' if theirs else f'n/a ({note})'} | "
            f"{f'{ratio:.2f}x' if ratio else '-'} | {steal_text(steal)} |"
        )
    best_ours = max(rows, key=lambda row: row[1])
    best_theirs = max((row for row in rows if row[2]), key=lambda row: row[2], default=None)
    if best_theirs:
        lines.append(
            f"| best of each ({best_ours[0]} vs {best_theirs[0]}) | {best_ours[1]:.1f} | "
            f"{best_theirs[2]:.1f} | {best_ours[1] / best_theirs[2]:.2f}x | |"
        )
    common.write_table(lines, out)
    return 0
