r"""Feed the image decoder and the weight readers mutated files: only our own errors, no hang, no
crash, bounded memory.

  python tools/fuzz.py --images=10000 --weights=1000 [--seed=0] [--timeout=10] [--max_rss_mb=1500]
      [--save_failures=DIR]

Seeds are made here: small JPEG (baseline, progressive, CMYK), PNG (RGB, RGBA, 16-bit, palette with
transparency), WebP, BMP, GIF and TIFF images, and weight files in every format jaxcls reads
(.safetensors, torch.save .pth in the zip and the legacy format, Keras .h5). Each fuzzed file is a
seed with seeded mutations (bit flips, overwritten bytes and length fields, truncation, inserted
or duplicated chunks). A worker process decodes each one (``input_pipeline.decode.decode_image``;
``jaxcls.weights.readers.read_weights`` on a file with the seed's extension) and answers with the
outcome; the parent gives it ``--timeout`` seconds per file (else: a hang, the worker is restarted),
notices a crash (the worker died), and reads the worker's resident memory after every file.

A pass means every file either decoded or raised our own error type (DecodeError, WeightsError),
and the worker's peak memory stayed under ``--max_rss_mb``. Prints progress with the rate, then a
summary; exit code 0 on a pass, 1 on any other exception, hang, crash or memory overrun (the
offending files are written to ``--save_failures`` when given), 2 on a usage error.
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import cli  # noqa: E402

TOOL = "fuzz"
OURS = ("DecodeError", "WeightsError")
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
LENGTHS = (0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
SANDBOX_SECONDS = 3.0


# ------------------------------------------------------------------------------------- seeds
def image_seeds() -> list[tuple[str, bytes]]:
    """(extension, bytes) of small valid images in every format and mode the decoder handles."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = (np.indices((24, 32)).sum(0)[..., None] * [3, 5, 7] % 256).astype(np.uint8)
    rgb = np.clip(rgb + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8)
    base = Image.fromarray(rgb)
    variants = [
        ("jpg", base, {"format": "JPEG", "quality": 80}),
        ("jpg", base, {"format": "JPEG", "progressive": True}),
        ("jpg", base.convert("CMYK"), {"format": "JPEG"}),
        ("png", base, {"format": "PNG"}),
        ("png", base.convert("RGBA"), {"format": "PNG"}),
        ("png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), {"format": "PNG"}),
        ("png", base.convert("P", palette=Image.ADAPTIVE), {"format": "PNG", "transparency": 0}),
        ("webp", base, {"format": "WEBP", "quality": 80}),
        ("webp", base, {"format": "WEBP", "lossless": True}),
        ("bmp", base, {"format": "BMP"}),
        ("gif", base.convert("P", palette=Image.ADAPTIVE), {"format": "GIF"}),
        ("tiff", base, {"format": "TIFF"}),
        ("tiff", base, {"format": "TIFF", "compression": "tiff_lzw"}),
    ]
    seeds = []
    for ext, image, kwargs in variants:
        buf = io.BytesIO()
        image.save(buf, **kwargs)
        seeds.append((ext, buf.getvalue()))
    return seeds


def weight_seeds() -> list[tuple[str, bytes]]:
    """(extension, bytes) of small weight files: safetensors, .pth zip and legacy, Keras .h5."""
    import h5py
    import numpy as np
    import torch
    from safetensors.numpy import save as save_safetensors

    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(size=(4,)).astype(np.float32),
        "fc.weight": rng.normal(size=(2, 4)).astype(np.float32),
        "bn.num_batches_tracked": np.array(3, np.int64),
    }
    seeds = [("safetensors", save_safetensors(tensors))]
    state = {k: torch.from_numpy(v) for k, v in tensors.items()}
    for zipped in (True, False):
        buf = io.BytesIO()
        torch.save(state, buf, _use_new_zipfile_serialization=zipped)
        seeds.append(("pth", buf.getvalue()))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.h5")
        with h5py.File(path, "w") as f:  # The Keras applications' legacy layout.
            f.attrs["layer_names"] = [b"conv"]
            g = f.create_group("conv")
            g.attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
            g.create_dataset("conv/kernel:0", data=tensors["conv.weight"].transpose(2, 3, 1, 0))
            g.create_dataset("conv/bias:0", data=tensors["conv.bias"])
        with open(path, "rb") as f:
            seeds.append(("h5", f.read()))
    return seeds


# --------------------------------------------------------------------------------- mutations
def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1-4 seeded mutations."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        kind = rng.randrange(7)
        pos = rng.randrange(len(out))
        if kind == 0:  # flip bits
            for _ in range(rng.randint(1, 8)):
                p = rng.randrange(len(out))
                out[p] ^= 1 << rng.randrange(8)
        elif kind == 1:  # an interesting byte
            out[pos] = rng.choice(INTERESTING)
        elif kind == 2:  # a length field: 2 or 4 bytes, either endianness
            width = rng.choice((2, 4))
            value = rng.choice(LENGTHS) & (0xFFFF if width == 2 else 0xFFFFFFFF)
            fmt = rng.choice("<>") + ("H" if width == 2 else "I")
            out[pos : pos + width] = struct.pack(fmt, value)
        elif kind == 3:  # truncate
            del out[pos:]
        elif kind == 4:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.randint(1, 64))
        elif kind == 5:  # duplicate a chunk
            end = min(len(out), pos + rng.randint(1, 256))
            out[pos:pos] = out[pos:end]
        else:  # zero a run
            end = min(len(out), pos + rng.randint(1, 64))
            out[pos:end] = bytes(end - pos)
    return bytes(out)


# ------------------------------------------------------------------------------------ worker
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker() -> None:
    """Reads ``<kind> <ext> <nbytes>\\n<bytes>`` jobs on stdin; answers one JSON line each."""
    from input_pipeline import decode
    from jaxcls.weights import readers, sandbox

    sandbox.BASE_SECONDS = SANDBOX_SECONDS  # A hanging .h5 read: our WeightsError in seconds.

    scratch = tempfile.mkdtemp(prefix="jaxcls-fuzz-")
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while header := stdin.readline():
        kind, ext, n = header.decode().split()
        data = stdin.read(int(n))
        outcome = "ok"
        try:
            if kind == "image":
                decode.decode_image(data)
            else:
                path = os.path.join(scratch, f"w.{ext}")
                with open(path, "wb") as f:
                    f.write(data)
                readers.read_weights(path)
        except Exception as e:  # noqa: BLE001 -- report every kind; the parent judges.
            outcome = type(e).__name__
            if outcome not in OURS:
                outcome += f": {str(e)[:200]}"
        stdout.write(json.dumps({"outcome": outcome, "rss_mb": round(rss_mb(), 1)}) + "\n")
        stdout.flush()


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Decoder warnings; a crash shows as the worker's exit.
            cwd=ROOT,
        )
        self.started_rss = None

    def ask(self, kind: str, ext: str, data: bytes, timeout: float) -> dict:
        """The worker's answer, or {'outcome': 'HANG'|'CRASH'} (the worker is then replaced)."""
        try:
            self.proc.stdin.write(f"{kind} {ext} {len(data)}\n".encode() + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": f"CRASH (exit {self.proc.wait()})"}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return {"outcome": "HANG"}
        line = self.proc.stdout.readline()
        if not line:
            return {"outcome": f"CRASH (exit {self.proc.wait()})"}
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


# ------------------------------------------------------------------------------------ parent
def fuzz(kind: str, seeds, count: int, args, rng: random.Random) -> dict:
    """Fuzzes ``count`` files of ``kind``; returns the tallies, failures and peak memory."""
    from jaxcls.trainer.progress import format_eta

    stats = {"files": count, "decoded": 0, "our_errors": 0, "failures": [], "peak_rss_mb": 0.0}
    by_format: dict[str, int] = {}
    worker_proc = Worker()
    baseline = worker_proc.ask(kind, seeds[0][0], seeds[0][1], args.timeout)  # warm-up import
    stats["baseline_rss_mb"] = baseline.get("rss_mb")
    t0 = last = time.monotonic()
    for i in range(count):
        ext, seed = seeds[i % len(seeds)]
        data = mutate(seed, rng)
        answer = worker_proc.ask(kind, ext, data, args.timeout)
        outcome = answer["outcome"]
        by_format[ext] = by_format.get(ext, 0) + 1
        stats["peak_rss_mb"] = max(stats["peak_rss_mb"], answer.get("rss_mb", 0.0))
        if outcome == "ok":
            stats["decoded"] += 1
        elif outcome in OURS:
            stats["our_errors"] += 1
        if outcome not in ("ok", *OURS) or answer.get("rss_mb", 0.0) > args.max_rss_mb:
            failure = f"{kind} #{i} (.{ext}): {outcome} rss {answer.get('rss_mb', '?')} MB"
            stats["failures"].append(failure)
            print(f"fuzz: FAILURE {failure}", flush=True)
            if args.save_failures:
                with open(os.path.join(args.save_failures, f"{kind}_{i}.{ext}"), "wb") as f:
                    f.write(data)
            if outcome.startswith(("HANG", "CRASH")):
                worker_proc.close()
                worker_proc = Worker()
        now = time.monotonic()
        if now - last >= 5 or i + 1 == count:
            rate = (i + 1) / max(now - t0, 1e-9)
            print(
                f"fuzz: {kind} {i + 1}/{count} ({rate:.0f}/s, ETA {format_eta((count - i - 1) / rate)})"
                f": decoded {stats['decoded']}, our errors {stats['our_errors']}, "
                f"failures {len(stats['failures'])}, peak RSS {stats['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            last = now
    worker_proc.close()
    stats["seconds"] = round(time.monotonic() - t0, 1)
    stats["by_format"] = by_format
    return stats


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--worker"]:
        worker()
        return 0
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--images", type=cli.non_negative_int, default=1000)
    p.add_argument("--weights", type=cli.non_negative_int, default=200)
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument(
        "--timeout", type=cli.non_negative_float, default=15.0, help="seconds per file (> 3)"
    )
    p.add_argument("--max_rss_mb", type=cli.non_negative_float, default=1500.0)
    p.add_argument("--save_failures", default="", help="folder for the files that failed")
    p.add_argument("--json", default="", type=cli.output_file, help="write the summary here")
    args = p.parse_args(argv)
    if args.save_failures and not os.path.isdir(args.save_failures):
        return cli.fail(TOOL, f"--save_failures {args.save_failures} is not a folder")
    rng = random.Random(args.seed)
    summary = {"seed": args.seed, "timeout_s": args.timeout, "max_rss_mb": args.max_rss_mb}
    if args.images:
        summary["images"] = fuzz("image", image_seeds(), args.images, args, rng)
    if args.weights:
        summary["weights"] = fuzz("weights", weight_seeds(), args.weights, args, rng)
    failures = sum(len(s["failures"]) for s in summary.values() if isinstance(s, dict))
    for kind in ("images", "weights"):
        if kind in summary:
            s = summary[kind]
            print(
                f"fuzz: {kind}: {s['files']} files in {s['seconds']} s: decoded {s['decoded']}, "
                f"our errors {s['our_errors']}, other errors/hangs/crashes/over memory "
                f"{len(s['failures'])}; worker RSS {s['baseline_rss_mb']} MB at start, "
                f"peak {s['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    if args.json:
        from jaxcls import files

        files.write_json(args.json, summary)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
