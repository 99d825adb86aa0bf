"""``python -m jaxcls.models``: the zoo listing (params, GFLOPs) and the per-model description."""

import re
import subprocess
import sys

import pytest

from jaxcls.models import __main__ as cli


def test_list_prints_params_aliases_and_gflops(capsys):
    assert cli.main(["--filter", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "unoptimised HLO" in out
    row = next(line for line in out.splitlines() if line.startswith("resnet18 "))
    size, params, gflops = row.split()[-3:]
    assert size == "224" and params == "11,689,512"
    # timm quotes 1.82 GMACs = 3.64 GFLOPs; XLA skips the taps that fall on padding.
    assert 3.0 < float(gflops) < 3.8


def test_list_shows_keras_aliases_and_can_skip_flops(capsys):
    assert cli.main(["--filter", "mobilenetv2_1", "--no_flops"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2_100 "))
    assert "MobileNetV2" in row and "3,504,872" in row and row.rstrip().endswith("-")


def test_gflops_of_a_single_conv_is_exact():
    # cnn_small at 8 px: the XLA count must include the stem conv's 2 * MACs (no padding taps at
    # the centre) - a lower bound that fails if the analysis returned bytes or nothing.
    model = cli.abstract_model("cnn_small", num_classes=10)
    gflops = cli.forward_gflops(model, 8)
    stem_macs = 6 * 6 * 9 * 3 * 16  # interior outputs of the 3x3 stem on 8x8, 3 -> 16 channels
    assert gflops * 1e9 >= 2 * stem_macs
    assert gflops == pytest.approx(cli.forward_gflops(model, 8, compiled=True), rel=0.2)


def test_describe_prints_feature_shapes_for_an_alias(capsys):
    assert cli.main(["--name", "DenseNet121"]) == 0
    out = capsys.readouterr().out
    assert "alias of densenet121" in out and "7,978,856" in out
    shapes = dict(re.findall(r"^\s+(\w+)\s+(\(.*\))$", out, re.M))
    assert shapes["stem"] == "(1, 56, 56, 64)"
    assert shapes["stage4"] == "(1, 7, 7, 1024)"
    assert shapes["pre_logits"] == "(1, 1024)" and shapes["logits"] == "(1, 1000)"


def test_module_runs_as_a_program():
    r = subprocess.run(
        [sys.executable, "-m", "jaxcls.models", "--name", "vgg16", "--size", "64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "138,357,544" in r.stdout and "stage5       (1, 4, 4, 512)" in r.stdout


def test_unknown_name_fails_with_the_registry_error():
    with pytest.raises(ValueError, match="unknown model"):
        cli.main(["--name", "resnet51"])
