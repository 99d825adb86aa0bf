"""Every tool reports a user error as one line, ``<tool>: error: <message>``, on stderr with exit
code 2, never a traceback: a missing or wrong-kind path, an unknown model / tag / source, a
malformed flag value, a weight file whose hash does not match its tag.

Most cases call the tool's ``main(argv)`` in this process (an escaping exception would fail the
test); the weight-hash mismatch and one flag error also run as real processes. Nothing here trains
or compiles a model. ``python -m jaxcls.models`` is covered in tests/models/test_main.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools import (
    bench_ab,
    bench_ops,
    bench_pipeline,
    catalogue,
    cli,
    convert_weights,
    param_counts,
    predict,
    preprocess,
    profile_step,
    saliency,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_FILE = os.path.join(ROOT, "tests", "weights", "fixtures", "keras_mobilenetv2.h5")


def run_main(module, argv, capsys) -> tuple[int, str]:
    """``(exit code, stderr)`` of ``module.main(argv)``; argparse's errors exit via SystemExit."""
    try:
        code = module.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_usage_error(code, err: str, tool: str, *words: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{tool}: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file.txt"
    path.write_text("not a folder\n")
    return str(path)


@pytest.fixture
def dataset(tmp_path):
    """A class-per-folder dataset of one small PNG."""
    from PIL import Image

    (tmp_path / "data" / "cat").mkdir(parents=True)
    Image.new("RGB", (12, 10), (200, 30, 30)).save(tmp_path / "data" / "cat" / "a.png")
    return str(tmp_path / "data")


# --------------------------------------------------------------------------------- data tools
def test_catalogue(tmp_path, a_file, dataset, capsys):
    code, err = run_main(catalogue, [str(tmp_path / "missing"), f"--out={tmp_path}/o"], capsys)
    assert_usage_error(code, err, "catalogue", "missing")
    code, err = run_main(catalogue, [dataset, f"--out={a_file}"], capsys)  # --out is a file
    assert_usage_error(code, err, "catalogue", a_file, "File exists")
    code, err = run_main(catalogue, [dataset, f"--out={tmp_path}/o", "--threads=many"], capsys)
    assert_usage_error(code, err, "catalogue", "--threads", "'many'")


def test_preprocess(tmp_path, a_file, dataset, capsys):
    code, err = run_main(preprocess, [a_file, f"--out={tmp_path}/o"], capsys)
    assert_usage_error(code, err, "preprocess", a_file)
    code, err = run_main(preprocess, [dataset, f"--out={a_file}"], capsys)  # --out is a file
    assert_usage_error(code, err, "preprocess", "Not a directory")
    code, err = run_main(preprocess, [dataset, f"--out={tmp_path}/o", "--quality=500"], capsys)
    assert_usage_error(code, err, "preprocess", "--quality", "between 1 and 100")
    code, err = run_main(preprocess, [dataset, f"--out={tmp_path}/o", "--resize=squash"], capsys)
    assert_usage_error(code, err, "preprocess", "squash")


def test_bench_pipeline(tmp_path, a_file, dataset, capsys):
    out = f"--out={tmp_path}/bench.md"
    code, err = run_main(bench_pipeline, [a_file, "--no_torch", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "is not a directory")
    code, err = run_main(bench_pipeline, [dataset, "--workers=0,two", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "--workers", "'two'")
    code, err = run_main(bench_pipeline, [dataset, "--photo_size=1024", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "--photo_size", "WIDTHxHEIGHT", "'1024'")
    (tmp_path / "empty").mkdir()
    code, err = run_main(bench_pipeline, [str(tmp_path / "empty"), "--no_torch", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "no class folders")
    code, err = run_main(bench_pipeline, [dataset, "--no_torch", "--workers=0", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "fewer than the per-host batch size 64")
    code, err = run_main(bench_pipeline, [dataset, "--torch_python=/no/python", out], capsys)
    assert_usage_error(code, err, "bench_pipeline", "--torch_python", "not an executable")
    assert not os.path.exists(tmp_path / "bench.md")


# ------------------------------------------------------------------------ checkpoints, weights
def test_predict(tmp_path, a_file, capsys):
    code, err = run_main(predict, [f"--checkpoint={tmp_path}/none", a_file], capsys)
    assert_usage_error(code, err, "predict", "no checkpoint found")
    code, err = run_main(predict, [f"--checkpoint={tmp_path}", a_file, "--top_k=0"], capsys)
    assert_usage_error(code, err, "predict", "--top_k", "positive")


def test_saliency(tmp_path, a_file, capsys):
    argv = [a_file, f"--checkpoint={a_file}", f"--out={tmp_path}/o"]
    code, err = run_main(saliency, argv, capsys)
    assert_usage_error(code, err, "saliency", "no checkpoint found", a_file)
    code, err = run_main(saliency, [*argv, "--alpha=2"], capsys)
    assert_usage_error(code, err, "saliency", "--alpha", "between 0 and 1")


def test_convert_weights(tmp_path, a_file, capsys):
    out = f"--output={tmp_path}/out"
    code, err = run_main(
        convert_weights,
        ["--model=resnet18", "--source=timm", f"--input={tmp_path}/missing.pth", out],
        capsys,
    )
    assert_usage_error(code, err, "convert_weights", "--input=", "no such file")
    code, err = run_main(
        convert_weights, ["--model=resnet18", "--source=caffe", f"--input={a_file}", out], capsys
    )
    assert_usage_error(code, err, "convert_weights", "--source", "'caffe'")
    code, err = run_main(
        convert_weights, ["--model=resnet18", "--source=timm", f"--input={a_file}", out], capsys
    )
    assert_usage_error(code, err, "convert_weights", "unrecognised weight file")
    code, err = run_main(
        convert_weights,
        ["--model=resnet51", "--source=keras", f"--input={KERAS_FILE}", out],
        capsys,
    )
    assert_usage_error(code, err, "convert_weights", "unknown model 'resnet51'")
    code, err = run_main(
        convert_weights, ["--model=resnet18", "--tag=timm:nope", f"--input={a_file}", out], capsys
    )
    assert_usage_error(code, err, "convert_weights", "unknown pretrained tag 'timm:nope'")
    # A real weight file that does not fit the model: the one-to-one report, on one line.
    code, err = run_main(
        convert_weights,
        ["--model=resnet18", "--source=keras", f"--input={KERAS_FILE}", out],
        capsys,
    )
    assert_usage_error(code, err, "convert_weights", "not one-to-one", "stages.0.0.bn1.bias")
    assert not os.path.exists(tmp_path / "out")


def test_convert_weights_hash_mismatch_as_a_program(tmp_path):
    """A file passed with a --tag whose published sha256 it does not have: refused before it is
    read, one line, exit code 2 (it was a traceback)."""
    bogus = tmp_path / "efficientnet-lite0-57934424.pth"
    bogus.write_bytes(b"PK\x03\x04 not the published weights")
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "convert_weights.py"),
            "--model=efficientnet_lite0",
            "--tag=efficientnet_pytorch:efficientnet-lite0",
            f"--input={bogus}",
            f"--output={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = assert_usage_error(r.returncode, r.stderr, "convert_weights", str(bogus))
    assert "does not match efficientnet_pytorch:efficientnet-lite0's published 57934424" in line
    assert not os.path.exists(tmp_path / "out")


# -------------------------------------------------------------------------------- benchmarks
def test_bench_ab(capsys):
    code, err = run_main(bench_ab, ["--models=efficientnet_b0,resnet51"], capsys)
    assert_usage_error(code, err, "bench_ab", "unknown model 'resnet51'", "resnet50")
    code, err = run_main(bench_ab, ["--models=cnn_small", "--size=1"], capsys)
    assert_usage_error(code, err, "bench_ab", "cnn_small cannot take a 1x1 input")
    code, err = run_main(bench_ab, ["--variant=fastest"], capsys)
    assert_usage_error(code, err, "bench_ab", "--variant", "'fastest'")


def test_bench_ops(tmp_path, capsys):
    code, err = run_main(bench_ops, ["--batch=0"], capsys)
    assert_usage_error(code, err, "bench_ops", "--batch", "positive")
    code, err = run_main(bench_ops, [f"--out={tmp_path}"], capsys)  # a folder
    assert_usage_error(code, err, "bench_ops", "--out", "is a directory")
    code, err = run_main(bench_ops, ["--torch_python=/no/such/python"], capsys)
    assert_usage_error(code, err, "bench_ops", "/no/such/python", "not an executable")


def test_profile_step(capsys):
    code, err = run_main(profile_step, ["--model=effnet_b0"], capsys)
    assert_usage_error(code, err, "profile_step", "unknown model 'effnet_b0'")
    code, err = run_main(
        profile_step, ["--model=cnn_small", "--batch=3", "--cpu_devices=2"], capsys
    )
    assert_usage_error(code, err, "profile_step", "--batch=3 is not divisible")
    code, err = run_main(profile_step, ["--size=-1"], capsys)
    assert_usage_error(code, err, "profile_step", "--size")


def test_param_counts(capsys, monkeypatch):
    code, err = run_main(param_counts, ["--only", "resnet18", "resnet51"], capsys)
    assert_usage_error(code, err, "param_counts", "'resnet51'")
    monkeypatch.setattr(param_counts, "_has", lambda module: module != "timm")
    code, err = run_main(param_counts, [], capsys)
    assert_usage_error(code, err, "param_counts", "timm not installed")
    assert capsys.readouterr().out == ""  # nothing printed before the error


def test_a_malformed_flag_as_a_program():
    """argparse's own errors: one line, no usage text in front, exit code 2."""
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "predict.py"), "x.jpg", "--top_k=five"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_usage_error(r.returncode, r.stderr, "predict", "--top_k", "'five'")


def test_one_line_joins_a_multi_line_message():
    assert cli.one_line("not one-to-one:\n  a\n  b\n\nignored:\n c") == (
        "not one-to-one: a; b; ignored: c"
    )
    assert cli.one_line(FileNotFoundError(2, "No such file or directory", "/x")) == (
        "/x: No such file or directory"
    )
