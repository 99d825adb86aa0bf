"""The runs table: one CSV row per training or evaluation run, to compare runs side by side
(model, pretrained weights, key hyper-parameters, accuracy and macro-F1 per split, wall time,
images/sec), and the same row logged to MLflow when it is installed and configured.

The table lives in ``config.eval.runs_table`` (a folder or a .csv file), by default in the parent of
the workdir, so sibling workdirs (``runs/effnet``, ``runs/cnn``, ...) share one table.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os

from absl import logging

from jaxcls import files

RUNS_TABLE = "runs.csv"
SPLITS = ("train", "val", "test")
# results.json 'efficiency' key -> runs-table column: a folder of runs is a comparison table.
EFFICIENCY_COLUMNS = {
    "params_trainable": "params_trainable",
    "gflops": "gflops",
    "latency_b1_p50_ms": "latency_b1_p50_ms",
    "infer_img_s": "eval_images_per_sec",
    "process_peak_rss_mb": "peak_rss_mb",
    "checkpoint_mb": "checkpoint_mb",
    "train_compile_s": "compile_seconds",
}


def get(config, dotted: str, default=None):
    """``config.a.b`` by dotted path, ``default`` where any part is missing (old configs)."""
    node = config
    for part in dotted.split("."):
        if node is None or not hasattr(node, "get"):
            return default
        node = node.get(part, None)
    return default if node is None else node


def runs_table_path(workdir: str, config) -> str:
    """``config.eval.runs_table`` (a folder or a .csv file), by default the workdir's parent."""
    where = get(config, "eval.runs_table", "") or os.path.dirname(files.absolute(workdir))
    return where if where.endswith(".csv") else os.path.join(where, RUNS_TABLE)


def _process_seconds() -> float | None:
    """Seconds since this process started (the run's wall time when run from the command line)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def runs_row(workdir: str, config, results: dict) -> dict:
    """One row of the runs table: what was trained, how, and how well."""
    splits = results.get("splits", {})
    wall = results.get("wall_seconds") or _process_seconds()
    row = {
        "run_id": os.path.basename(files.absolute(workdir)),
        "finished_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workdir": files.absolute(workdir),
        "model": results.get("model", get(config, "model.name", "")),
        "pretrained": pretrained_tag(config, results),
        "dataset": results.get("dataset", get(config, "dataset", "")),
        "image_size": get(config, "data.image_size", ""),
        "epochs": results.get("epochs_run", ""),
        "batch_size": get(config, "batch_size", ""),
        "optimizer": get(config, "optimizer.name", ""),
        "learning_rate": get(config, "optimizer.learning_rate", ""),
        "schedule": get(config, "optimizer.schedule", ""),
        "weight_decay": get(config, "optimizer.weight_decay", ""),
        "label_smoothing": get(config, "label_smoothing", ""),
        "seed": get(config, "seed", ""),
    }
    for split in SPLITS:
        m = splits.get(split, {})
        row[f"{split}_accuracy"] = _round(m.get("accuracy"))
        row[f"{split}_macro_f1"] = _round(m.get("macro_f1", (m.get("macro_avg") or {}).get("f1")))
    row["wall_seconds"] = _round(wall, 1)
    row["images_per_sec"] = _round(results.get("train_images_per_sec"), 1)
    efficiency = results.get("efficiency") or {}
    for key, column in EFFICIENCY_COLUMNS.items():
        row[column] = _round(efficiency.get(key))
    row["num_devices"] = results.get("num_devices", "")
    row["platform"] = results.get("platform", "")
    return {k: "" if v is None else v for k, v in row.items()}


def pretrained_tag(config, results: dict) -> str:
    """Where the initial weights came from: the pretrained tag, else the file or checkpoint
    (``results['init']`` as recorded by the trainer, else ``config.init``); '' from scratch."""
    record = results.get("init") or {}
    for value in (
        record.get("tag"),
        get(config, "init.pretrained"),
        record.get("path"),
        get(config, "init.path"),
        record.get("checkpoint"),
        get(config, "init.checkpoint"),
    ):
        if value:
            return str(value)
    return ""


def _round(x, digits: int = 4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), digits)


def append_row(path: str, row: dict) -> None:
    """Appends ``row`` to the CSV at ``path`` (header written once). When the row has columns
    the file lacks (an older table), or ``path`` is a URL (object stores cannot append), the
    file is rewritten whole with the union of the columns."""
    files.makedirs(os.path.dirname(files.absolute(path)))
    header, old_rows = [], []
    if files.exists(path):
        with files.path(path).open() as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            old_rows = list(reader)
    if header and not set(row) - set(header) and not files.is_url(path):
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header, restval="").writerow(row)
        return
    header += [k for k in row if k not in header]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=header, restval="")
    writer.writeheader()
    writer.writerows([*old_rows, row])
    files.write_text(path, table.getvalue())


def log_mlflow(row: dict, workdir: str) -> bool:
    """Logs the run to MLflow when mlflow is installed and ``MLFLOW_TRACKING_URI`` is set:
    parameters and metrics of the runs-table row, and the report folder as artifacts."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return False
    try:
        import mlflow
    except ImportError:
        return False
    numeric = {
        k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    metric_keys = [
        k for k in numeric if k.endswith(("_accuracy", "_macro_f1", "per_sec", "_seconds"))
    ]
    try:
        with mlflow.start_run(run_name=row["run_id"]):
            mlflow.log_params({k: v for k, v in row.items() if k not in metric_keys})
            mlflow.log_metrics({k: numeric[k] for k in metric_keys})
            report_dir = os.path.join(workdir, "report")
            if os.path.isdir(report_dir):
                mlflow.log_artifacts(report_dir, artifact_path="report")
    except Exception as e:  # noqa: BLE001 - a tracking server problem must not fail the run.
        logging.warning("MLflow logging failed: %s", e)
        return False
    return True
