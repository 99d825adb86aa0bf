"""A study's comparison: ``study.csv`` (every column), ``study.md`` (sorted by the chosen metric,
best first), ``study_curves.png`` (the validation curves of every variant, overlaid) and one bar
chart per metric (``bar_<column>.png``).

A row comes from the variant's ``results.json``: the accuracy, macro-F1 and loss of each split,
the cross-dataset evaluation, training time, and the efficiency block under the runs-table
column names (`jaxcls.reporting.runs.EFFICIENCY_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import os

from jaxcls import files
from jaxcls.benchmark import compare
from jaxcls.reporting import plots, runs
from jaxcls.study.spec import StudyError

SPLITS = ("val", "test", "train")
METRIC_COLUMNS = (
    [f"{s}_{m}" for s in SPLITS for m in ("accuracy", "macro_f1", "loss")]
    + ["cross_accuracy", "cross_macro_f1", "cross_loss", "wall_seconds", "images_per_sec"]
    + list(runs.EFFICIENCY_COLUMNS.values())
)
# Words users say -> columns (a column's key, or the key with '/' for '_', works too).
ALIASES = {
    "accuracy": "test_accuracy",
    "macro_f1": "test_macro_f1",
    "f1": "test_macro_f1",
    "loss": "test_loss",
    "cross": "cross_accuracy",
    "cross_dataset": "cross_accuracy",
    "time": "wall_seconds",
    "train_time": "wall_seconds",
    "params": "params_trainable",
    "latency": "latency_b1_p50_ms",
    "memory": "peak_rss_mb",
    "size": "checkpoint_mb",
}
HEADERS = {
    "wall_seconds": "train time (s)",
    "images_per_sec": "train img/s",
    "params_trainable": "params (M)",
    "gflops": "GFLOPs",
    "latency_b1_p50_ms": "latency b1 (ms)",
    "eval_images_per_sec": "infer img/s",
    "peak_rss_mb": "peak RSS (MB)",
    "checkpoint_mb": "size (MB)",
    "compile_seconds": "compile (s)",
}
BARS = [
    "test_accuracy",
    "test_macro_f1",
    "cross_accuracy",
    "wall_seconds",
    "params_trainable",
    "latency_b1_p50_ms",
    "peak_rss_mb",
    "checkpoint_mb",
]
TEXT_COLUMNS = ["variant", "model", "pretrained", "cross_dataset", "epochs", "status"]
# study.md shows these (study.csv has every column).
MD_COLUMNS = [
    "variant",
    "model",
    "pretrained",
    "epochs",
    "val_accuracy",
    "test_accuracy",
    "test_macro_f1",
    "test_loss",
    "cross_dataset",
    "cross_accuracy",
    "cross_macro_f1",
    "wall_seconds",
    "params_trainable",
    "latency_b1_p50_ms",
    "peak_rss_mb",
    "checkpoint_mb",
    "status",
]


def resolve_metric(name: str) -> str:
    """A metric column from its key, ``split/metric`` or a word (`ALIASES`); StudyError listing
    the known ones otherwise."""
    key = name.strip().lower().replace("/", "_").replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in METRIC_COLUMNS:
        raise StudyError(
            f"unknown metric {name!r}; known: {', '.join(METRIC_COLUMNS)} (or {', '.join(ALIASES)})"
        )
    return key


def higher_is_better(key: str) -> bool:
    return "accuracy" in key or "f1" in key or key.endswith("per_sec")


def header(key: str) -> str:
    if key in HEADERS:
        return HEADERS[key]
    split, _, metric = key.partition("_")
    return f"{split} {metric.replace('macro_f1', 'macro-F1')}" if metric else key


def row(name: str, workdir: str, config, outcome) -> dict:
    """The table row of one variant (its status and error; metrics when results.json exists)."""
    results = files.read_json(os.path.join(workdir, "results.json"), None) or {}
    out = {"variant": name, "status": outcome.status, "error": outcome.error}
    if not results.get("splits"):
        out["model"] = config.model.name
        return out
    out["status"] = "done" if outcome.status in ("done", "skipped") else outcome.status
    out["model"] = results.get("model", config.model.name)
    out["pretrained"] = runs.pretrained_tag(config, results) or "scratch"
    out["epochs"] = results.get("epochs_run")
    for split, metrics in results["splits"].items():
        for m in ("accuracy", "macro_f1", "loss"):
            out[f"{split}_{m}"] = metrics.get(m)
    cross = (results.get("cross_dataset") or {}).get(config.eval.dataset) or {}
    if cross:
        out["cross_dataset"] = config.eval.dataset
        for m in ("accuracy", "macro_f1", "loss"):
            out[f"cross_{m}"] = cross.get(m)
    out["wall_seconds"] = results.get("wall_seconds")
    out["images_per_sec"] = results.get("train_images_per_sec")
    efficiency = results.get("efficiency") or {}
    for key, column in runs.EFFICIENCY_COLUMNS.items():
        out[column] = efficiency.get(key)
    out["history"] = results.get("history") or []
    return out


def sort_rows(rows: list[dict], key: str) -> list[dict]:
    """Best first by ``key`` (descending for accuracies, F1 and rates); rows without it last."""
    present = [r for r in rows if r.get(key) is not None]
    present.sort(key=lambda r: r[key], reverse=higher_is_better(key))
    return present + [r for r in rows if r.get(key) is None]


def columns(rows: list[dict], metric: str) -> list[str]:
    """The columns some row fills: text columns, the sort metric, the other metrics, error."""
    order = TEXT_COLUMNS[:1] + [metric] + TEXT_COLUMNS[1:]
    order += [k for k in METRIC_COLUMNS if k != metric] + ["error"]
    return [k for k in order if any(r.get(k) not in (None, "") for r in rows)]


def _csv_text(rows: list[dict], keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r.get(k) is None else r[k] for k in keys} for r in rows)
    return buffer.getvalue()


def markdown(rows: list[dict], keys: list[str], title: str, metric: str) -> str:
    """The Markdown table of `MD_COLUMNS` and ``metric`` (errors below it, one line each)."""
    shown = [k for k in keys if k in MD_COLUMNS or k == metric]
    lines = [title, "", "| " + " | ".join(header(k) for k in shown) + " |"]
    lines.append("|" + "---|" * len(shown))
    lines += ["| " + " | ".join(compare.cell(k, r.get(k)) for k in shown) + " |" for r in rows]
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += [""] + [f"- {r['variant']} {r['status']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def curves_figure(rows: list[dict]):
    """Validation accuracy and loss per epoch, one line per variant."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for i, r in enumerate(rows):
            points = [
                (h["epoch"], h[f"val/{metric}"])
                for h in r.get("history", [])
                if h.get(f"val/{metric}") is not None
            ]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "-o", markersize=2, color=f"C{i % 10}", label=r["variant"])
        ax.set_title(f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if axes[0].lines:
        axes[0].legend(fontsize=7, ncol=1 + len(axes[0].lines) // 15, loc="best")
    fig.tight_layout()
    return fig


def write(out: str, rows: list[dict], metric: str, title: str, extra_bars=()) -> list[str]:
    """study.csv, study.md, study_curves.png and the bar charts (of ``metric``, ``extra_bars``
    and `BARS`, where some row has a value) in ``out``; returns the paths."""
    rows = sort_rows(rows, metric)
    keys = columns(rows, metric)
    paths = [os.path.join(out, "study.csv"), os.path.join(out, "study.md")]
    files.write_text(paths[0], _csv_text(rows, keys))
    files.write_text(paths[1], markdown(rows, keys, title, metric))
    paths.append(plots.save(curves_figure(rows), os.path.join(out, "study_curves.png")))
    for key in dict.fromkeys([metric, *extra_bars, *BARS]):
        bar_rows = [{"model": r["variant"], key: r.get(key)} for r in rows]
        if any(r[key] is not None for r in bar_rows):
            fig = compare.bar_chart(bar_rows, key, header(key))
            paths.append(plots.save(fig, os.path.join(out, f"bar_{key}.png")))
    return paths
