r"""How long a model's first train step takes, compilation included, in fresh processes: with the
persistent compilation cache empty (cold), then again with the cache the first run filled (warm,
what a rerun, a resume or the next study variant sees), and with the cache off.

  python tools/bench_compile.py --model=efficientnet_b0 [--size=224] [--batch=32]
      [--cpu_devices=2] [--repeats=1] [--xla_flags='...'] [--out=compile.md]

Each measurement is its own Python process (the in-memory jit cache cannot help), running the
trainer's real train step (`jaxcls.benchmark.measure.train`, SGD with momentum) on random data.
``--xla_flags`` is added to XLA_FLAGS of every child, to measure what a flag costs or saves.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls import files  # noqa: E402
from jaxcls.benchmark import common  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "bench_compile"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
model, size, batch, devices, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from jaxcls.benchmark import common
common.prepare_process(devices)
from jaxcls.trainer import compile_cache
compile_cache.enable(cache)
from jaxcls.benchmark import measure
subject = measure.from_registry(model, size)
r = measure.train(subject, batch, steps=1, rounds=1, devices=devices)
print(json.dumps({"first_step_s": r["train_compile_s"], "process_s": time.perf_counter() - t_start,
                  **compile_cache.COUNTER.snapshot()}))
"""


def child(model, size, batch, devices, cache, xla_flags) -> dict:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    r = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(size), str(batch), str(devices), cache],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--batch", type=cli.positive_int, default=32)
    p.add_argument("--cpu_devices", type=cli.positive_int, default=2)
    p.add_argument("--repeats", type=cli.positive_int, default=1, help="runs of each kind")
    p.add_argument("--xla_flags", default="")
    p.add_argument("--out", default="", help="also write the Markdown table here")
    args = p.parse_args(argv)
    try:  # ValueError covers common.UsageError
        common.check_batch_divides(args.batch, args.cpu_devices)
        cli.check_models([args.model], args.size)
    except ValueError as e:
        return cli.fail(TOOL, e)
    rows = {"off": [], "cold": [], "warm": []}
    spec = (args.model, args.size, args.batch, args.cpu_devices)
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            # Alternating kinds in each round; cold and warm share this round's cache folder.
            for kind, where in (("off", "off"), ("cold", cache), ("warm", cache)):
                r = child(*spec, where, args.xla_flags)
                rows[kind].append(r)
                print(
                    f"round {i + 1}/{args.repeats} {kind}: first step {r['first_step_s']:.1f} s, "
                    f"process {r['process_s']:.1f} s, cache hits {r['hits']}, "
                    f"written {r['misses']}",
                    flush=True,
                )
    lines = [
        f"{args.model} at {args.size} px, batch {args.batch}, {args.cpu_devices} CPU devices"
        + (f", XLA_FLAGS+='{args.xla_flags}'" if args.xla_flags else ""),
        "",
        "| cache | first train step (s), median | whole process (s), median | programs reused |",
        "|---|---|---|---|",
    ]
    for kind, rs in rows.items():
        first = statistics.median(r["first_step_s"] for r in rs)
        whole = statistics.median(r["process_s"] for r in rs)
        hits = statistics.median(r["hits"] for r in rs)
        lines.append(f"| {kind} | {first:.1f} | {whole:.1f} | {hits:.0f} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        files.write_text(args.out, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
