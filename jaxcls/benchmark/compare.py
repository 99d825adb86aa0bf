"""Compare models the way users do: accuracy beside latency, memory and size, in one table (the
library half of ``tools/compare.py``).

Subjects are registry models (random weights at ``size`` px, 1000 classes) and trained workdirs
or converted checkpoints (at their own size and classes), in any mix. `measure.measure` measures
each; a workdir adds what its ``results.json`` records (test accuracy, macro-F1 and loss, the
accuracy of every cross-dataset evaluation, training wall time and img/s).

With ``torch_python`` (an interpreter where torch, and for timm's models timm, import; jaxcls is
not needed there), every registry model that timm also has gets a ``<name> (timm)`` row, and every
scratch CNN a ``<name> (torch)`` row (the same network rebuilt in PyTorch, `torch_cnn`):
`TORCH_SCRIPT`, run by `common.run_reference`, measures the PyTorch model on the CPU the same way
(params, batch-1 latency, img/s at ``batch`` for inference and for a forward/backward/SGD step,
peak RSS growth, ``torch.save`` size). Each round measures the jaxcls model, then the PyTorch one,
so both see the same machine load; the table gives the medians over rounds (for peak memory, the
maximum).

Outputs (`write_outputs`): ``compare.csv`` (every column), ``compare.md`` (units in the headers,
under a line naming platform, device kind, device count, batch, size and rounds), one bar chart
per metric (``bar_<column>.png``) and, when some subject has a test accuracy,
``accuracy_vs_latency.png`` and ``accuracy_vs_size.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import statistics
import sys
import time

from jaxcls import files
from jaxcls.benchmark import common, torch_cnn
from jaxcls.native import malloc

UsageError = common.UsageError
LOOPS = 3  # timed loops per round behind each img/s (their median), on both sides
STEAL_RETRIES = 3  # with --max_steal: at most this many more tries of a round under steal

TORCH_CHECK = r"""
import json, sys
import torch
try:
    import timm
    no_timm = ""
except Exception as e:
    timm, no_timm = None, f"{type(e).__name__}: {e}"
print(json.dumps({"version": f"torch {torch.__version__}" + (f", timm {timm.__version__}" if timm else ""),
                  "threads": torch.get_num_threads(), "no_timm": no_timm,
                  "known": [n for n in sys.argv[1:] if timm and timm.is_model(n)]}))
"""

# argv: name, batch, size, repeats, steps, loops[, the torch_cnn spec as JSON: that network, not
# timm's model of the name].
TORCH_SCRIPT = (
    torch_cnn.BUILD_SCRIPT
    + r"""
import json, os, resource, statistics, sys, tempfile, time
import torch
name, (batch, size, repeats, steps, loops) = sys.argv[1], map(int, sys.argv[2:7])
cnn_spec = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None
def peak_rss():  # Linux: VmHWM, which writing 5 to clear_refs lowers to the current RSS
    try:
        with open("/proc/self/status") as f:
            return 1024 * int(next(l for l in f if l.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
def timed_ms(call, n, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return times
torch.manual_seed(0)
if cnn_spec:
    model = build_cnn(cnn_spec)
else:
    import timm
    model = timm.create_model(name, pretrained=False, num_classes=1000)
model = model.to(memory_format=torch.channels_last)
reset_peak_rss()
rss0 = peak_rss()
stats = ("running_mean", "running_var")
out = {
    "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    "params_non_trainable": sum(b.numel() for n, b in model.named_buffers() if n.endswith(stats)),
}
def images(n):
    return torch.randn(n, 3, size, size).to(memory_format=torch.channels_last)
x1, xb, y = images(1), images(batch), torch.randint(0, 1000, (batch,))
model.eval()
with torch.inference_mode():
    lat = timed_ms(lambda: model(x1), repeats, 3)
    fwd = timed_ms(lambda: model(xb), loops, 1)
q = statistics.quantiles(lat, n=10, method="inclusive") if len(lat) > 1 else [lat[0]] * 9
out.update(latency_b1_p50_ms=statistics.median(lat), latency_b1_p90_ms=q[8],
           latency_b1_std_ms=statistics.pstdev(lat), infer_img_s=batch / (statistics.median(fwd) / 1e3))
if steps:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()
    loop = timed_ms(lambda: [step() for _ in range(steps)], loops, 1)
    out["train_img_s"] = steps * batch / (statistics.median(loop) / 1e3)
out["rss_growth_mb"] = (peak_rss() - rss0) / 2**20
with tempfile.TemporaryDirectory() as tmp:
    torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
    out["disk_mb"] = os.path.getsize(os.path.join(tmp, "model.pt")) / 2**20
print(json.dumps(out))
"""
)

# Every column, in table order: (row key, Markdown header; ``{b}`` is the batch). The
# cross-dataset accuracies (`cross_key`) go after ``test_loss``.
COLUMNS = [
    ("model", "model"),
    ("source", "source"),  # registry | workdir | timm | torch
    ("architecture", "architecture"),
    ("image_size", "size (px)"),
    ("params_trainable", "params (M)"),
    ("params_non_trainable", "non-trainable (M)"),
    ("gflops", "GFLOPs"),
    ("latency_b1_p50_ms", "latency b1 p50 (ms)"),
    ("latency_b1_p90_ms", "latency b1 p90 (ms)"),
    ("latency_b1_std_ms", "latency b1 std (ms)"),
    ("compile_b1_s", "compile b1 (s)"),
    ("infer_img_s", "infer img/s (b{b})"),
    ("train_img_s", "train img/s (b{b})"),
    ("train_compile_s", "train compile (s)"),
    ("mfu", "MFU"),  # only where the device's peak FLOP/s is known (benchmark/mfu.py)
    ("xla_memory_mb", "XLA memory b{b} (MB)"),
    ("rss_growth_mb", "peak RSS growth (MB)"),
    ("device_peak_mb", "device peak (MB)"),
    ("disk_mb", "disk (MB)"),
    ("disk_mb_bf16", "disk bf16 (MB)"),
    ("test_accuracy", "test accuracy"),
    ("test_macro_f1", "test macro-F1"),
    ("test_loss", "test loss"),
    ("train_wall_s", "training wall time (s)"),
    ("training_img_s", "training img/s"),
    ("platform", "platform"),
    ("device_kind", "device kind"),
    ("devices", "devices"),
    ("train_devices", "train devices"),
    ("batch", "batch"),
    ("cpu_steal_pct", "CPU steal (%)"),  # what the host took meanwhile (common.StealMeter)
]
MD_HIDDEN = {"source", "platform", "device_kind", "devices", "train_devices", "batch"}
SCALE = {"params_trainable": 1e-6, "params_non_trainable": 1e-6}
PEAKS = {"rss_growth_mb", "device_peak_mb"}  # over rounds: the maximum, not the median
BARS = [
    "params_trainable",
    "gflops",
    "latency_b1_p50_ms",
    "infer_img_s",
    "train_img_s",
    "xla_memory_mb",
    "rss_growth_mb",
    "disk_mb",
    "test_accuracy",
]


@dataclasses.dataclass
class Options:
    """How every subject is measured (`run`'s arguments)."""

    size: int = 224
    batch: int = 32
    repeats: int = 20
    rounds: int = 1
    train_steps: int = 3
    train: bool = True
    bf16: bool = False
    devices: int = 1
    torch_python: str = ""
    torch_reuse_memory: bool = False  # PyTorch with glibc's malloc set as jaxcls sets it
    max_steal: float | None = None  # measure a round again when more CPU time (%) was stolen


@dataclasses.dataclass
class Entry:
    """One subject to measure: a registry model or a workdir / checkpoint."""

    label: str
    source: str  # 'registry' or 'workdir'
    name: str  # the canonical registry name, or the workdir's path
    results: dict | None = None  # the workdir's results.json
    checkpoint: bool = True
    reference: str = ""  # a PyTorch row too: 'timm' (timm's model) or 'torch' (torch_cnn)
    torch_spec: dict | None = None  # the torch_cnn spec of a 'torch' reference


def cross_key(spec: str) -> str:
    return f"cross_dataset.{spec}.accuracy"


def header(key: str, batch: int) -> str:
    if key.startswith("cross_dataset."):
        return f"accuracy on {key[len('cross_dataset.') : -len('.accuracy')]}"
    return dict(COLUMNS).get(key, key).format(b=batch)


def higher_is_better(key: str) -> bool:
    return "accuracy" in key or "f1" in key or key.endswith("img_s")


def results_columns(results: dict | None) -> dict:
    """The columns a workdir's results.json gives (empty for None)."""
    if results is None:
        return {}
    test = (results.get("splits") or {}).get("test") or {}
    row = {
        "test_accuracy": test.get("accuracy"),
        "test_macro_f1": test.get("macro_f1"),
        "test_loss": test.get("loss"),
        "train_wall_s": results.get("wall_seconds"),
        "training_img_s": results.get("train_images_per_sec"),
    }
    for spec, section in sorted((results.get("cross_dataset") or {}).items()):
        row[cross_key(spec)] = section.get("accuracy")
    return row


def check_model(name: str, size: int):
    """``(canonical name, abstract model)`` of registry model ``name`` after checking, abstractly,
    that it takes ``size`` px; UsageError for an unknown name (with close names) or a size it
    cannot take."""
    from jaxcls import models
    from jaxcls.models import summary

    try:
        info = models.model_info(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    kwargs = {"input_size": size} if "input_size" in info.defaults else {}
    try:
        model = summary.abstract_model(info.name, **kwargs)
        summary.check_input_size(model, size, info.name)
    except summary.InputSizeError as e:
        raise UsageError(str(e)) from None
    except (ValueError, TypeError) as e:  # the model refuses to be built for this size
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"{info.name} cannot take a {size}x{size} input: {first}") from None
    return info.name, model


def check_workdir(path: str) -> Entry:
    """A workdir or checkpoint folder as an Entry; UsageError if it is missing or has neither
    results.json nor a checkpoint. Warns when it has a checkpoint but no results.json."""
    from jaxcls.trainer import checkpoint

    if not os.path.isdir(path):
        raise UsageError(f"workdir {path} does not exist")
    results_path, results = os.path.join(path, "results.json"), None
    if os.path.exists(results_path):
        try:
            with open(results_path) as f:
                results = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {results_path}: {e}") from None
    try:
        checkpoint.find_step_dir(path)
        has_checkpoint = True
    except checkpoint.CheckpointError:
        has_checkpoint = False
    if results is None and not has_checkpoint:
        raise UsageError(f"{path} has neither results.json nor a checkpoint")
    if results is None:
        print(
            f"compare: warning: {path} has no results.json; its accuracy columns stay empty",
            file=sys.stderr,
        )
    label = os.path.basename(os.path.normpath(path))
    return Entry(label, "workdir", path, results, has_checkpoint)


def expand_workdirs(patterns: list[str]) -> list[Entry]:
    """Entries for ``patterns`` (paths or glob patterns, expanded here so a quoted ``runs/*``
    works). A pattern skips files and folders that are not workdirs; a plain path must be one."""
    entries = []
    for pattern in patterns:
        if not any(c in pattern for c in "*?["):
            entries.append(check_workdir(pattern))
            continue
        matches = sorted(p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isdir(p))
        if not matches:
            raise UsageError(f"--workdirs pattern {pattern!r} matches no folder")
        for path in matches:
            try:
                entries.append(check_workdir(path))
            except UsageError as e:
                print(f"compare: skipping {path}: {e}")
    if patterns and not entries:
        raise UsageError(f"no workdir in {', '.join(patterns)}")
    return entries


def check_torch(python: str, names: list[str]) -> dict:
    """``{'version', 'threads', 'known', 'no_timm'}`` from ``python`` (``known``: the names timm
    has; ``no_timm``: why timm does not import, '' when it does); UsageError when torch does not
    import there."""
    out, error = common.run_reference(python, TORCH_CHECK, *names)
    if out is None:
        raise UsageError(f"--torch_python={python} cannot import torch: {error}")
    return out


def check_options(opts: Options) -> None:
    """UsageError for a number no measurement can run with."""
    import jax

    for field in ("size", "batch", "repeats", "rounds", "train_steps", "devices"):
        if getattr(opts, field) < (0 if field == "devices" else 1):
            flag = "cpu_devices" if field == "devices" else field
            least = "0 (as the trainer)" if field == "devices" else "1"
            raise UsageError(f"--{flag} must be at least {least}, got {getattr(opts, field)}")
    available = jax.devices()
    if opts.devices > len(available):
        raise UsageError(
            f"--cpu_devices={opts.devices} but only {len(available)} "
            f"{available[0].platform} device(s) are available"
        )
    if opts.torch_reuse_memory and not opts.torch_python:
        raise UsageError("--torch_reuse_memory sets malloc up for timm: give --torch_python too")
    if opts.torch_reuse_memory and not malloc.is_glibc():
        raise UsageError(
            "--torch_reuse_memory sets glibc's malloc, and this C library is not glibc"
        )
    common.check_batch_divides(opts.batch, opts.devices)
    if opts.max_steal is not None and not 0 <= opts.max_steal <= 100:
        raise UsageError(f"--max_steal is a percentage from 0 to 100, got {opts.max_steal:g}")
    if opts.max_steal is not None and common.cpu_ticks() is None:
        raise UsageError(
            "--max_steal needs the CPU steal counters of Linux's /proc/stat, which this "
            "system does not have"
        )
    if not opts.devices and opts.batch % len(available):
        raise UsageError(
            f"--batch={opts.batch} is not divisible by the {len(available)} devices that "
            "--cpu_devices=0 may train over; give a multiple or --cpu_devices=N"
        )


def plan(models: list[str], workdirs: list[str], opts: Options) -> tuple[list[Entry], dict]:
    """The entries to measure, every input checked before anything is measured; also the
    reference Python's `check_torch` answer (empty without ``torch_python``)."""
    if not models and not workdirs:
        raise UsageError("nothing to compare: give --models and/or --workdirs")
    check_options(opts)
    checked = dict(check_model(m, opts.size) for m in models)  # name -> abstract model
    names = list(checked)
    torch_info = check_torch(opts.torch_python, names) if opts.torch_python else {}
    entries = [Entry(n, "registry", n) for n in names] + expand_workdirs(workdirs)
    labels = [e.label for e in entries]
    for e in entries:
        if labels.count(e.label) > 1 and e.source == "workdir":  # the paths tell them apart
            e.label = os.path.normpath(e.name)
    if not torch_info:
        return entries, torch_info
    without, timm_needed = [], False
    for e in entries[: len(names)]:
        model = checked[e.name]
        if e.name in torch_info["known"]:
            e.reference = "timm"
        elif not torch_cnn.is_cnn(model):
            without.append(f"{e.name} (timm has no such model)")
            timm_needed = True
        else:
            try:  # a scratch CNN: rebuilt in PyTorch
                e.torch_spec, e.reference = torch_cnn.spec(model), "torch"
            except torch_cnn.Unsupported as err:
                without.append(f"{e.name} (the PyTorch rebuild of scratch CNNs does no {err})")
    if torch_info["no_timm"] and timm_needed:
        python = opts.torch_python
        raise UsageError(f"--torch_python={python} cannot import timm: {torch_info['no_timm']}")
    if without:
        print(f"compare: no PyTorch row for {', '.join(without)}")
    return entries, torch_info


def aggregate(rows: list[dict]) -> dict:
    """One row from per-round rows: a number's median over rounds (a peak's maximum)."""
    out = dict(rows[0])
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numbers and len(set(values)) > 1:
            out[key] = max(values) if key in PEAKS else statistics.median(values)
    return out


def reference_round(entry: Entry, opts: Options, torch_info: dict) -> tuple[dict | None, str]:
    """One measurement of the entry's PyTorch model (timm's, or the `torch_cnn` rebuild) in
    ``opts.torch_python``: ``(row, '')`` or ``(None, why not)``."""
    steps = opts.train_steps if opts.train else 0
    name = entry.name
    args = [name, opts.batch, opts.size, opts.repeats, steps, LOOPS]
    args += [json.dumps(entry.torch_spec)] if entry.reference == "torch" else []
    env = malloc.ENVIRONMENT if opts.torch_reuse_memory else None
    out, error = common.run_reference(opts.torch_python, TORCH_SCRIPT, *args, env=env)
    if out is None:
        return None, error
    label = f"{name} ({entry.reference})"
    row = {"model": label, "source": entry.reference, "architecture": name}
    row.update(image_size=opts.size, **out, platform="cpu", batch=opts.batch)
    kind = f"torch, {torch_info['threads']} thread(s)" + (", malloc as jaxcls's" if env else "")
    row.update(device_kind=kind, devices=1)
    return row, ""


def subject_of(entry: Entry, opts: Options):
    """The `measure.Subject` of an entry; None for a workdir without a checkpoint."""
    from jaxcls.benchmark import measure

    if entry.source == "registry":
        return measure.from_registry(entry.name, opts.size)
    return measure.from_checkpoint(entry.name) if entry.checkpoint else None


def measure_entry(entry: Entry, opts: Options, torch_info: dict) -> list[tuple]:
    """``[(label, row or None, the row of each round, note)]``: the entry's row, then its PyTorch
    row; per round the jaxcls and the PyTorch measurement alternate, and each round's row has the
    share of CPU time the host took meanwhile (``cpu_steal_pct``, `common.StealMeter`)."""
    from jaxcls.benchmark import measure

    subject, ours, theirs, note = subject_of(entry, opts), [], [], ""
    kwargs = dict(batch=opts.batch, repeats=opts.repeats, train_steps=opts.train_steps)
    kwargs.update(rounds=LOOPS, with_train=opts.train, bf16=opts.bf16, devices=opts.devices)
    reference = f"{entry.name} ({entry.reference})"
    for _ in range(opts.rounds):
        if subject is not None:
            row, steal = quiet_round(lambda: measure.measure(subject, **kwargs), entry.label, opts)
            ours.append(dict(row, cpu_steal_pct=steal))
        if entry.reference and not note:
            call = lambda: reference_round(entry, opts, torch_info)  # noqa: E731
            (row, note), steal = quiet_round(call, reference, opts)
            theirs += [dict(row, cpu_steal_pct=steal)] if row else []
    row = aggregate(ours) if ours else {"architecture": (entry.results or {}).get("model")}
    row.update(model=entry.label, source=entry.source, **results_columns(entry.results))
    note_ours = "" if ours else "not measured: no checkpoint"
    out = [(entry.label, row, ours, note_ours)]
    if entry.reference:
        ref_row = aggregate(theirs) if theirs and not note else None
        out.append((reference, ref_row, theirs, note and f"failed: {note}"))
    return out


def quiet_round(measure_once, label: str, opts: Options) -> tuple:
    """``(measure_once(), the share of CPU time stolen meanwhile in %)``. With ``opts.max_steal``,
    a round under more steal than that is measured again, at most `STEAL_RETRIES` more times (the
    last try is kept whatever its steal; the table shows it)."""
    for attempt in range(1 + STEAL_RETRIES):
        with common.StealMeter() as meter:
            out = measure_once()
        steal = meter.percent
        if opts.max_steal is None or steal is None or steal <= opts.max_steal:
            break
        if attempt < STEAL_RETRIES:
            print(
                f"compare: {label}: {steal:.0f}% of the CPU time was stolen (over --max_steal="
                f"{opts.max_steal:g}), measuring the round again ({attempt + 1} of {STEAL_RETRIES})",
                flush=True,
            )
    return out, steal


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def per_round(rounds: list[dict], key: str, fmt: str) -> str:
    """`` (per round a, b, c)`` for ``key`` over several rounds (those that have it); else ''."""
    values = [fmt.format(r[key]) for r in rounds if r.get(key) is not None]
    return f" (per round {', '.join(values)})" if len(values) > 1 else ""


def progress_line(
    i: int, n: int, label: str, row: dict | None, rounds: list[dict], note: str, elapsed: float
) -> str:
    """``[i/N] label: latency .. ms, train .. img/s, ..., CPU steal ..% (elapsed, ETA)``."""
    parts = [note] if note else []
    if row and row.get("latency_b1_p50_ms") is not None:
        parts.append(f"latency {row['latency_b1_p50_ms']:.2f} ms")
        parts.append(f"infer {row['infer_img_s']:.1f} img/s")
        if row.get("train_img_s") is not None:
            per = per_round(rounds, "train_img_s", "{:.1f}")
            parts.append(f"train {row['train_img_s']:.1f} img/s{per}")
        parts.append(f"params {row['params_trainable'] / 1e6:.2f} M")
        parts.append(f"disk {row['disk_mb']:.2f} MB")
        if row.get("cpu_steal_pct") is not None:
            per = per_round(rounds, "cpu_steal_pct", "{:.0f}%")
            parts.append(f"CPU steal {row['cpu_steal_pct']:.0f}%{per}")
    if row and row.get("test_accuracy") is not None:
        parts.append(f"test accuracy {row['test_accuracy']:.4f}")
    eta = elapsed / i * (n - i)
    return (
        f"[{i}/{n}] {label}: {', '.join(parts)} ({duration(elapsed)} elapsed, ETA {duration(eta)})"
    )


def measure_all(entries: list[Entry], opts: Options, torch_info: dict) -> list[dict]:
    """Every entry's rows (and PyTorch's), with a progress line as each is done."""
    n, i, rows, t0 = len(entries) + sum(bool(e.reference) for e in entries), 0, [], time.time()
    for entry in entries:
        for label, row, rounds, note in measure_entry(entry, opts, torch_info):
            i += 1
            rows += [row] if row else []
            print(progress_line(i, n, label, row, rounds, note, time.time() - t0), flush=True)
    return rows


def column_keys(rows: list[dict]) -> list[str]:
    """The columns some row fills, in table order (cross-dataset accuracies after test loss)."""
    keys = [k for k, _ in COLUMNS]
    cross = sorted({k for r in rows for k in r if k.startswith("cross_dataset.")})
    at = keys.index("test_loss") + 1
    keys[at:at] = cross
    keys += sorted({k for r in rows for k in r} - set(keys))
    return [k for k in keys if any(r.get(k) is not None for r in rows)]


def resolve_column(name: str, keys: list[str], batch: int) -> str:
    """A column by its key, its header, or a word in its key (``accuracy``: test accuracy)."""
    for key in keys:
        if name.lower() in (key.lower(), header(key, batch).lower()):
            return key
    word = name.lower().replace(" ", "_")
    for key in keys:
        if word in key.lower():
            return key
    raise UsageError(f"--sort={name}: no such column; columns: {', '.join(keys)}")


def sort_rows(rows: list[dict], key: str = "") -> list[dict]:
    """Rows by ``key`` (best first: descending for accuracies and img/s, else ascending; empty
    cells last); by default by test accuracy where present, then by latency."""
    if not key:
        inf = float("inf")

        def best(r):
            acc, lat = r.get("test_accuracy"), r.get("latency_b1_p50_ms")
            return (acc is None, -(acc or 0.0), inf if lat is None else lat)

        return sorted(rows, key=best)
    present = sorted(
        (r for r in rows if r.get(key) is not None),
        key=lambda r: r[key],
        reverse=higher_is_better(key),
    )
    return present + [r for r in rows if r.get(key) is None]


def cell(key: str, value) -> str:
    """A value as the Markdown table shows it (in the header's unit)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    value = value * SCALE.get(key, 1)
    if "accuracy" in key or "f1" in key or key == "test_loss":
        return f"{value:.4f}"
    if isinstance(value, int):
        return str(value)
    a = abs(value)
    return f"{value:.1f}" if a >= 100 else f"{value:.2f}" if a >= 1 or a == 0 else f"{value:.3g}"


def train_devices(opts: Options) -> str:
    if opts.devices:
        return f"{opts.devices} device(s)"
    return "one or all devices as the trainer picks for each model (column 'train devices')"


def markdown(rows: list[dict], keys: list[str], opts: Options, torch_info: dict) -> list[str]:
    """The Markdown table under a line saying where and how it was measured."""
    from jaxcls.benchmark import measure

    info = measure.device_info()
    lines = [
        f"Measured on platform {info['platform']}, device kind {info['device_kind']}, "
        f"{info['devices']} device(s) ({os.cpu_count()} CPU cores); batch {opts.batch}, size "
        f"{opts.size} (a workdir at its own size), {opts.rounds} round(s). Latency and inference "
        f"on one device, train img/s data-parallel over {train_devices(opts)}; medians over rounds.",
    ]
    if torch_info:
        threads = torch_info["threads"]
        lines[0] += f" PyTorch rows: {torch_info['version']} on the CPU, {threads} thread(s), "
        lines[0] += (
            "glibc's malloc set as jaxcls sets its own (--torch_reuse_memory)."
            if opts.torch_reuse_memory
            else "malloc as it comes (jaxcls's as config.reuse_memory sets it)."
        )
    if "cpu_steal_pct" in keys:
        lines[0] += (
            " CPU steal: the share of all CPU time the virtual machine's host took away while the"
            " row was measured (median over rounds); numbers measured under steal run slow."
        )
    hidden = MD_HIDDEN - ({"train_devices"} if not opts.devices else set())
    shown = [k for k in keys if k not in hidden]
    lines += ["", "| " + " | ".join(header(k, opts.batch) for k in shown) + " |"]
    lines.append("|" + "---|" * len(shown))
    lines += ["| " + " | ".join(cell(k, r.get(k)) for k in shown) + " |" for r in rows]
    return lines


def write_csv(rows: list[dict], keys: list[str], path: str) -> None:
    with files.atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in keys} for r in rows)


def bar_chart(rows: list[dict], key: str, title: str):
    """One horizontal bar per subject, its value written beside it."""
    import matplotlib.pyplot as plt

    points = [(r["model"], r[key] * SCALE.get(key, 1)) for r in rows if r.get(key) is not None]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(points)))
    labels, values = zip(*points)
    ax.barh(range(len(points)), values, color="C0")
    ax.set_yticks(range(len(points)), labels)
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(v, y, f" {cell(key, v / SCALE.get(key, 1))}", va="center", fontsize=8)
    ax.set_xlabel(title)
    ax.margins(x=0.15)
    return fig


def scatter(rows: list[dict], xkey: str, xlabel: str):
    """Test accuracy against ``xkey``, each point labelled by its subject."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        if r.get("test_accuracy") is not None and r.get(xkey) is not None:
            ax.scatter(r[xkey], r["test_accuracy"], color="C0")
            ax.annotate(
                r["model"],
                (r[xkey], r["test_accuracy"]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    return fig


def write_plots(rows: list[dict], keys: list[str], out: str, batch: int) -> list[str]:
    """``bar_<column>.png`` for each metric some row has, and the accuracy scatter plots when
    some subject has a test accuracy; returns the paths written."""
    from jaxcls.reporting import plots

    paths = [
        plots.save(bar_chart(rows, key, header(key, batch)), os.path.join(out, f"bar_{key}.png"))
        for key in BARS
        if key in keys
    ]
    if "test_accuracy" not in keys:
        print("compare: no subject has a test accuracy: no accuracy_vs_* plots")
        return paths
    for name, xkey in (("latency", "latency_b1_p50_ms"), ("size", "disk_mb")):
        fig = scatter(rows, xkey, header(xkey, batch))
        paths.append(plots.save(fig, os.path.join(out, f"accuracy_vs_{name}.png")))
    return paths


def write_outputs(rows: list[dict], opts: Options, torch_info: dict, out: str) -> list[str]:
    """compare.csv, compare.md (also printed) and the plots in ``out``; returns their paths."""
    os.makedirs(out, exist_ok=True)
    keys = column_keys(rows)
    write_csv(rows, keys, os.path.join(out, "compare.csv"))
    common.write_table(markdown(rows, keys, opts, torch_info), os.path.join(out, "compare.md"))
    paths = [os.path.join(out, name) for name in ("compare.csv", "compare.md")]
    return paths + write_plots(rows, keys, out, opts.batch)


def run(
    models: list[str],
    workdirs: list[str],
    *,
    out: str,
    sort: str = "",
    cpu_devices: int = 1,
    **options,
) -> int:
    """Checks every input, measures every subject (and PyTorch's), writes the table and plots to
    ``out``; returns 0. ``options``: the fields of `Options`. Raises UsageError on bad input,
    before anything is measured."""
    common.prepare_process(cpu_devices, [options.get("batch", Options.batch)])  # before JAX starts
    opts = Options(devices=cpu_devices, **options)
    entries, torch_info = plan(models, workdirs, opts)
    known = [k for k, _ in COLUMNS] + [k for e in entries for k in results_columns(e.results)]
    sort_key = resolve_column(sort, known, opts.batch) if sort else ""
    rows = sort_rows(measure_all(entries, opts, torch_info), sort_key)
    paths = write_outputs(rows, opts, torch_info, out)
    print(f"\nwrote {', '.join(os.path.basename(p) for p in paths)} to {out}")
    return 0
