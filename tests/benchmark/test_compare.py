"""tools/compare.py: registry models, a trained workdir and (a stand-in for) timm in one table,
CSV + Markdown + plots, and one-line errors for bad input, checked before anything is measured."""

import csv
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.benchmark import common, compare, measure
from jaxcls.native import malloc
from jaxcls.trainer import run as train
from tests.small import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = {"test_accuracy", "test_macro_f1", "test_loss", "train_wall_s", "training_img_s"}
JAXCLS_ONLY = {"gflops", "compile_b1_s", "train_compile_s", "xla_memory_mb", "train_devices"}

# A stand-in for a Python with torch and timm: answers `compare.TORCH_CHECK` (timm knows only
# cnn_small) and `compare.TORCH_SCRIPT` (fixed numbers), so the PyTorch rows' plumbing is tested
# without timm. The script runs for real on the torch of the dev install in
# test_scratch_cnns_get_a_torch_row_measured_by_real_torch, and by hand with timm (docs/tools.md).
FAKE_TORCH = """#!{python}
import json, sys
script, args = sys.argv[2], sys.argv[3:]
if "is_model" in script:
    print(json.dumps({{"version": "torch 0, timm 0", "threads": 1, "known": ["cnn_small"],
                       "no_timm": ""}}))
else:
    print(json.dumps({{"params_trainable": 7, "params_non_trainable": 1,
        "latency_b1_p50_ms": 2.0, "latency_b1_p90_ms": 3.0, "latency_b1_std_ms": 0.5,
        "infer_img_s": 10.0, "train_img_s": 5.0, "rss_growth_mb": 1.0, "disk_mb": 0.5}}))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("runs") / "cnn_digits")
    # cnn rather than cnn_small: enough parameters that Orbax's metadata is a small part of its size
    train.run(small_config(num_epochs=1, **{"model.name": "cnn"}), path)
    with open(os.path.join(path, "results.json")) as f:
        return path, json.load(f)


@pytest.fixture(scope="module")
def compared(workdir, tmp_path_factory):
    out, tmp = tmp_path_factory.mktemp("compare"), tmp_path_factory.mktemp("torch")
    fake = tmp / "python"
    fake.write_text(FAKE_TORCH.format(python=sys.executable))
    fake.chmod(0o755)
    pattern = os.path.join(os.path.dirname(workdir[0]), "*")  # also matches ../runs.csv: skipped
    code = compare.run(
        ["cnn_small", "cnn"],
        [pattern],
        out=str(out),
        size=16,
        batch=4,
        repeats=3,
        rounds=1,
        train_steps=2,
        cpu_devices=2,
        torch_python=str(fake),
    )
    assert code == 0
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def by_model(rows):
    return {r["model"]: r for r in rows}


def test_writes_the_table_and_one_plot_per_metric(compared):
    out, rows = compared
    assert [r["model"] for r in rows][0] == "cnn_digits"  # the one with an accuracy first
    assert set(by_model(rows)) == {
        "cnn_digits",
        "cnn_small",
        "cnn",
        "cnn_small (timm)",
        "cnn (torch)",
    }
    pngs = [f"bar_{k}.png" for k in compare.BARS] + [
        "accuracy_vs_latency.png",
        "accuracy_vs_size.png",
    ]
    for name in ["compare.csv", "compare.md", *pngs]:
        assert os.path.getsize(out / name) > 1000 or name == "compare.csv", name


def test_every_cell_is_filled_but_what_a_subject_cannot_have(compared):
    _, rows = compared
    for row in rows:
        for key, value in row.items():
            empty_ok = (row["source"] != "workdir" and (key in RESULTS or "accuracy" in key)) or (
                row["source"] in ("timm", "torch") and key in JAXCLS_ONLY
            )
            assert value != "" or empty_ok, (row["model"], key)
    assert by_model(rows)["cnn_digits"]["train_devices"] == "2"


def test_params_are_the_models_own_count(compared):
    rows = by_model(compared[1])
    try:
        from jaxcls.models.summary import param_count
    except ImportError:
        param_count = None
    for name in ("cnn_small", "cnn"):
        model = models.create(name, num_classes=1000, rngs=nnx.Rngs(0))
        trainable = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        if param_count is not None:
            trainable = param_count(model)
        stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
        assert int(rows[name]["params_trainable"]) == trainable
        assert int(rows[name]["params_non_trainable"]) == stats > 0


def test_latency_memory_and_throughput_are_positive_and_size_is_float32(compared):
    for row in compared[1]:
        for key in ("latency_b1_p50_ms", "latency_b1_p90_ms", "infer_img_s", "train_img_s"):
            assert float(row[key]) > 0, (row["model"], key)
        assert float(row["latency_b1_p90_ms"]) >= float(row["latency_b1_p50_ms"])
        assert float(row["rss_growth_mb"]) >= 0  # the allocator may reuse freed pages: 0 is real
        if row["source"] not in ("timm", "torch"):
            assert float(row["xla_memory_mb"]) > 0 and float(row["gflops"]) > 0
            params = int(row["params_trainable"]) + int(row["params_non_trainable"])
            # float32 values (Orbax compresses them a little) plus its metadata: tens of KB.
            assert abs(float(row["disk_mb"]) * 2**20 - params * 4) < 128 * 1024, row["model"]


def test_disk_size_of_a_real_model_is_within_a_few_percent_of_4_bytes_per_value():
    from jaxcls.benchmark import measure

    subject = measure.from_registry("resnet18", 32, num_classes=10)
    values = sum(measure.count_params(subject).values())
    # Orbax compresses the arrays: random float32 weights save about 7% under 4 bytes a value.
    f32, bf16 = measure.disk_bytes(subject), measure.disk_bytes(subject, jnp.bfloat16)
    assert f32 == pytest.approx(4 * values, rel=0.1)
    assert 0.3 * f32 < bf16 < 0.55 * f32  # half the bytes, compressed further


def test_the_workdir_row_carries_its_results(compared, workdir):
    row, results = by_model(compared[1])["cnn_digits"], workdir[1]
    assert float(row["test_accuracy"]) == results["splits"]["test"]["accuracy"]
    assert float(row["test_macro_f1"]) == results["splits"]["test"]["macro_f1"]
    assert float(row["train_wall_s"]) == results["wall_seconds"]
    assert row["architecture"] == "cnn" and row["image_size"] == "16"


def test_timm_rows_come_only_for_models_timm_has_other_scratch_cnns_get_torch_rows(compared):
    rows = by_model(compared[1])
    timm = rows["cnn_small (timm)"]
    assert timm["source"] == "timm" and timm["params_trainable"] == "7"
    assert float(timm["latency_b1_p50_ms"]) == 2.0 and "cnn (timm)" not in rows
    assert rows["cnn (torch)"]["source"] == "torch" and "cnn_small (torch)" not in rows


def test_markdown_has_unit_headers_under_the_platform_line(compared):
    lines = (compared[0] / "compare.md").read_text().splitlines()
    platform = jax.devices()[0].platform
    assert lines[0].startswith(f"Measured on platform {platform}, device kind ")
    for words in ("device(s)", "batch 4", "size 16", "1 round(s)", "torch 0, timm 0"):
        assert words in lines[0]
    headers = [h.strip() for h in lines[2].strip("|").split("|")]
    for h in (
        "params (M)",
        "GFLOPs",
        "latency b1 p50 (ms)",
        "train img/s (b4)",
        "disk (MB)",
        "test accuracy",
        "test macro-F1",
    ):
        assert h in headers
    assert len(lines) == 4 + 5  # the line, a blank, header, rule, one row per subject


def test_rounds_alternate_jaxcls_and_timm_and_give_medians(monkeypatch):
    calls = []

    def fake_measure(subject, **kwargs):
        calls.append("jaxcls")
        return {"latency_b1_p50_ms": float(len(calls)), "rss_growth_mb": float(len(calls))}

    def fake_timm(entry, opts, info):
        calls.append("timm")
        return {"model": f"{entry.name} (timm)", "train_img_s": float(len(calls))}, ""

    monkeypatch.setattr(measure, "measure", fake_measure)
    monkeypatch.setattr(compare, "subject_of", lambda entry, opts: object())
    monkeypatch.setattr(compare, "reference_round", fake_timm)
    entry = compare.Entry("resnet50", "registry", "resnet50", reference="timm")
    (_, ours, _, _), (_, theirs, per_round, _) = compare.measure_entry(
        entry, compare.Options(rounds=3), {}
    )
    assert calls == ["jaxcls", "timm"] * 3
    assert ours["latency_b1_p50_ms"] == 3.0 and ours["rss_growth_mb"] == 5.0  # median; peak: max
    assert theirs["train_img_s"] == 4.0 and [r["train_img_s"] for r in per_round] == [2, 4, 6]


def test_every_row_says_how_much_cpu_time_the_host_took_while_it_was_measured(compared):
    out, rows = compared
    for row in rows:
        if os.path.exists("/proc/stat"):  # Linux: a share of the CPU time, 0 on a quiet machine
            assert 0 <= float(row["cpu_steal_pct"]) <= 100, row["model"]
        else:
            assert row["cpu_steal_pct"] == "", row["model"]
    line = (out / "compare.md").read_text().splitlines()[0]
    assert ("CPU steal:" in line) == os.path.exists("/proc/stat")


def test_max_steal_measures_a_round_again_while_the_host_took_too_much_cpu_time(
    tmp_path, monkeypatch, capsys
):
    # A /proc/stat whose counters each measurement moves on: 100 ticks, of which the host stole
    # 50 in jaxcls's first try of round 1 and in all four tries of round 2, 0 otherwise.
    stat, ticks, stolen = tmp_path / "stat", [0], [0]
    stat.write_text("cpu  0 0 0 0 0 0 0 0 0 0\n")
    monkeypatch.setattr(common, "PROC_STAT", str(stat))
    steals = iter([50, 0, 0, 50, 50, 50, 50, 0])  # jaxcls, torch, jaxcls ..., per try
    tries = []

    def measured(side, value):
        tries.append(side)
        ticks[0] += 100
        stolen[0] += next(steals)
        stat.write_text(f"cpu  {ticks[0] - stolen[0]} 0 0 0 0 0 0 {stolen[0]} 0 0\n")
        return value

    monkeypatch.setattr(
        measure, "measure", lambda subject, **kw: measured("jaxcls", {"train_img_s": 1.0})
    )
    monkeypatch.setattr(compare, "subject_of", lambda entry, opts: object())
    monkeypatch.setattr(
        compare, "reference_round", lambda e, o, i: measured("torch", ({"train_img_s": 2.0}, ""))
    )
    entry = compare.Entry("cnn", "registry", "cnn", reference="torch")
    (_, ours, rounds, _), (_, _, theirs, _) = compare.measure_entry(
        entry, compare.Options(rounds=2, max_steal=10), {}
    )
    assert tries == ["jaxcls", "jaxcls", "torch", "jaxcls", "jaxcls", "jaxcls", "jaxcls", "torch"]
    # Round 2 stayed at 50% through all its tries: the last is kept, and the table shows it.
    assert [r["cpu_steal_pct"] for r in rounds] == [0, 50] and ours["cpu_steal_pct"] == 25
    assert [r["cpu_steal_pct"] for r in theirs] == [0, 0]
    said = capsys.readouterr().out.splitlines()
    assert said[0] == (
        "compare: cnn: 50% of the CPU time was stolen (over --max_steal=10), measuring the round "
        "again (1 of 3)"
    )
    assert len(said) == 1 + compare.STEAL_RETRIES


# A stand-in for a Python with torch and timm that reports the MALLOC_* variables it was given.
ECHO_MALLOC = """#!{python}
import json, os
print(json.dumps({{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""


def test_torch_reuse_memory_gives_timm_the_malloc_jaxcls_runs_with(tmp_path, monkeypatch):
    for key in malloc.ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    fake = tmp_path / "python"
    fake.write_text(ECHO_MALLOC.format(python=sys.executable))
    fake.chmod(0o755)
    info = {"threads": 2}
    entry = compare.Entry("resnet18", "registry", "resnet18", reference="timm")
    for reuse in (True, False):
        opts = compare.Options(torch_python=str(fake), torch_reuse_memory=reuse)
        row, error = compare.reference_round(entry, opts, info)
        assert not error
        seen = {k: v for k, v in row.items() if k.startswith("MALLOC_")}
        assert seen == (malloc.ENVIRONMENT if reuse else {})
        assert ("malloc as jaxcls's" in row["device_kind"]) == reuse


def test_torch_reuse_memory_is_refused_where_malloc_is_not_glibcs(monkeypatch):
    # macOS or musl: the MALLOC_* variables would do nothing, so the timm rows would be mislabelled.
    monkeypatch.setattr(malloc, "is_glibc", lambda: False)
    opts = compare.Options(torch_python=sys.executable, torch_reuse_memory=True)
    with pytest.raises(compare.UsageError, match="this C library is not glibc"):
        compare.check_options(opts)


def test_sort_takes_a_column_key_header_or_word():
    rows = [
        {"model": "a", "test_accuracy": 0.9, "latency_b1_p50_ms": 5.0, "train_img_s": 1.0},
        {"model": "b", "test_accuracy": None, "latency_b1_p50_ms": 1.0, "train_img_s": 3.0},
        {"model": "c", "test_accuracy": 0.95, "latency_b1_p50_ms": 9.0, "train_img_s": 2.0},
        {"model": "d", "test_accuracy": None, "latency_b1_p50_ms": 0.5, "train_img_s": None},
    ]
    keys = [k for k, _ in compare.COLUMNS]
    assert [r["model"] for r in compare.sort_rows(rows)] == ["c", "a", "d", "b"]
    for name, order in [
        ("accuracy", "cabd"),
        ("latency b1 p50 (ms)", "dbac"),
        ("train_img_s", "bcad"),
    ]:
        key = compare.resolve_column(name, keys, batch=32)
        assert "".join(r["model"] for r in compare.sort_rows(rows, key)) == order


def test_cpu_devices_0_trains_each_model_where_the_trainer_would(monkeypatch, tmp_path):
    """--cpu_devices=0: the train column runs on one device or all, as the trainer picks; here
    cnn_small at 8 px (about 38 train FLOPs per parameter per image) on one of the 8."""
    from jaxcls.trainer import parallel

    monkeypatch.setattr(parallel, "_auto_cpu_mesh", True)  # as if compare had made the devices
    kwargs = dict(size=8, batch=8, repeats=2, rounds=1, train_steps=1, cpu_devices=0)
    assert compare.run(["cnn_small"], [], out=str(tmp_path), **kwargs) == 0
    with open(tmp_path / "compare.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["train_devices"] == "1" and float(row["train_img_s"]) > 0
    md = (tmp_path / "compare.md").read_text()
    assert "as the trainer picks" in md and "| train devices |" in md


def test_scratch_cnns_get_a_torch_row_measured_by_real_torch(tmp_path):
    """The real `compare.TORCH_SCRIPT` on the torch of the dev install: the rebuilt network has
    our parameter and statistics counts, and its columns are measured."""
    kwargs = dict(size=16, batch=4, repeats=2, rounds=2, train_steps=1, cpu_devices=1)
    assert (
        compare.run(["cnn_small"], [], out=str(tmp_path), torch_python=sys.executable, **kwargs)
        == 0
    )
    with open(tmp_path / "compare.csv") as f:
        rows = by_model(csv.DictReader(f))
    ours, theirs = rows["cnn_small"], rows["cnn_small (torch)"]
    assert theirs["source"] == "torch" and theirs["architecture"] == "cnn_small"
    for key in ("params_trainable", "params_non_trainable"):
        assert theirs[key] == ours[key], key
    for key in ("latency_b1_p50_ms", "infer_img_s", "train_img_s", "disk_mb"):
        assert float(theirs[key]) > 0, key
    import torch

    assert f"PyTorch rows: torch {torch.__version__}" in (tmp_path / "compare.md").read_text()


def _no_timm_python():
    probe = subprocess.run([sys.executable, "-c", "import timm"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("timm imports in this Python: no interpreter without it to test with")
    return sys.executable


BAD_INPUTS = [
    (["--models=resnet5"], "unknown model 'resnet5'. Did you mean: resnet50"),
    (["--workdirs={tmp}/missing"], "workdir {tmp}/missing does not exist"),
    (["--workdirs={tmp}/empty"], "{tmp}/empty has neither results.json nor a checkpoint"),
    (["--models=cnn_conv4invto128", "--size=8"], "cnn_conv4invto128 cannot take a 8x8 input"),
    ([], "nothing to compare: give --models and/or --workdirs"),
    (["--models=cnn_small", "--cpu_devices=-1"], "--cpu_devices: must be 0 or more, got '-1'"),
    (
        ["--models=cnn_small", "--torch_reuse_memory"],
        "--torch_reuse_memory sets malloc up for timm: give --torch_python too",
    ),
    (["--models=cnn_small", "--max_steal=100.5"], "--max_steal is a percentage from 0 to 100"),
    (["--models=cnn_small", "--max_steal=-5"], "--max_steal: must be 0 or more, got '-5'"),
    (  # timm is needed for a model that is no scratch CNN (they have PyTorch rebuilds)
        ["--models=cnn_small,resnet18", "--torch_python={python}"],
        "--torch_python={python} cannot import timm",
    ),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    (tmp_path / "empty").mkdir()
    python = _no_timm_python() if "{python}" in message else ""
    subs = {"tmp": tmp_path, "python": python}
    args = [a.format(**subs) for a in args] + [f"--out={tmp_path / 'out'}"]
    r = subprocess.run(
        [sys.executable, "tools/compare.py", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("compare: error: ") and message.format(**subs) in r.stderr
    assert not (tmp_path / "out").exists()  # checked before anything was measured
