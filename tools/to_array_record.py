r"""Packs a folder or CSV image dataset into ArrayRecord shards that grain reads by random access.

  python tools/to_array_record.py DATA_DIR --out=OUT_DIR [--shard_size=2000] [--threads=2]
  python tools/to_array_record.py data/list.csv --out=OUT_DIR       # a CSV manifest (path,label)
  python -m jaxcls.main --config=configs/effnet.py --config.dataset=array_record:OUT_DIR ...

Every file is decoded once first (the scan training does); files that do not decode are left out
and listed in OUT_DIR/skipped.csv (and on the console). The encoded bytes are stored unchanged (no
re-compression), so training on OUT_DIR sees the same pixels, makes the same train/val/test split
(the keys are the original relative paths) and resumes exactly as on the original. Layout and
record format: ``input_pipeline/sources/array_record.py``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import cli  # noqa: E402

TOOL = "to_array_record"


def source_spec(path: str) -> str:
    """'csv:PATH' for a .csv file, 'folder:PATH' for a folder; a clear error otherwise."""
    if os.path.isdir(path):
        return f"folder:{path}"
    if os.path.isfile(path) and path.lower().endswith(".csv"):
        return f"csv:{path}"
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    raise ValueError(f"{path} is neither a folder of class folders nor a .csv manifest")


def convert(data: str, out: str, shard_size: int = 2000, threads: int = 2) -> dict:
    """Writes ``out`` (see the module docstring); returns its info.json contents."""
    from array_record.python.array_record_module import ArrayRecordWriter

    from input_pipeline import catalogue, sources, splits
    from input_pipeline.sources import array_record as ar
    from jaxcls import files

    source = sources.make_source(source_spec(data), {"class_map": ""})
    if os.path.exists(out) and os.listdir(out):
        raise FileExistsError(17, "output folder exists and is not empty", out)
    print(f"{TOOL}: scanning {len(source)} files of {source.spec} ...", flush=True)
    skipped = catalogue.scan_bad_files(source, num_threads=threads)
    bad = {s["key"] for s in skipped}
    for s in skipped:
        print(f"{TOOL}: skipped {s['path']}: {s['reason']}", flush=True)
    keep = [i for i, k in enumerate(source.keys) if k not in bad]
    if not keep:
        raise ValueError(f"no readable image in {data}")
    os.makedirs(out, exist_ok=True)
    count = max(1, math.ceil(len(keep) / shard_size))
    names = ar.shard_names(count)
    rows = []
    t0 = last = time.time()
    for s, name in enumerate(names):
        writer = ArrayRecordWriter(os.path.join(out, name), "group_size:1")
        try:
            for i in keep[s * shard_size : (s + 1) * shard_size]:
                key, label = source.keys[i], int(source.labels[i])
                writer.write(ar.encode_record(key, label, source.load(key)))
                rows.append([key, label, source.class_names[label], len(rows)])
                if time.time() - last > 10:
                    last = time.time()
                    rate = len(rows) / (last - t0)
                    eta = (len(keep) - len(rows)) / max(rate, 1e-9)
                    print(f"{TOOL}: {len(rows)}/{len(keep)} | {rate:.0f} img/s | ETA {eta:.0f} s")
        finally:
            writer.close()
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(["key", "label", "class_name", "record"])
    w.writerows(rows)
    files.write_text(os.path.join(out, ar.MANIFEST), table.getvalue())
    files.write_text(os.path.join(out, ar.CLASSES), "".join(f"{c}\n" for c in source.class_names))
    splits.write_skipped(os.path.join(out, ar.SKIPPED), skipped)
    info = {
        "format": ar.FORMAT,
        "source": source.spec,
        "examples": len(rows),
        "classes": len(source.class_names),
        "skipped": len(skipped),
        "shards": count,
        "seconds": round(time.time() - t0, 1),
    }
    # Last: its presence marks a complete folder.
    files.write_json(os.path.join(out, ar.INFO), info)
    return info


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("data", help="a folder of class folders, or a CSV manifest (path,label)")
    p.add_argument("--out", required=True, help="the new folder (must not exist or be empty)")
    p.add_argument("--shard_size", type=cli.positive_int, default=2000, help="images per shard")
    p.add_argument(
        "--threads", type=cli.positive_int, default=2, help="decoding threads for the scan"
    )
    args = p.parse_args(argv)
    try:
        info = convert(args.data, args.out, args.shard_size, args.threads)
    except (ValueError, *cli.FILE_ERRORS) as e:
        return cli.fail(TOOL, e)
    print(
        f"{TOOL}: wrote {info['examples']} images of {info['classes']} classes in "
        f"{info['shards']} shard(s) to {args.out} ({info['skipped']} skipped); train with "
        f"--config.dataset=array_record:{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
