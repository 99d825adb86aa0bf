"""``python -m jaxcls.models``: the zoo listing (params, GFLOPs) and the per-model description."""

import re
import subprocess
import sys

import pytest

from jaxcls.models import __main__ as cli
from jaxcls.models import summary


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


def _table(out: str) -> dict[str, list[str]]:
    """The summary table's rows: unit -> [feature, shape, trainable, non-trainable, MB]."""
    rows = {}
    row = re.compile(r"(\S+) +(\S*) +(\(.*?\)|-)? +([\d,]+) +([\d,]+) +([\d.]+)")
    for line in out.splitlines():
        m = row.fullmatch(line)
        if m:
            rows[m.group(1)] = [m.group(2), m.group(3), m.group(4), m.group(5), m.group(6)]
    return rows


def test_describe_prints_the_unit_table_for_an_alias(capsys):
    assert cli.main(["--name", "DenseNet121", "--no_flops"]) == 0
    out = capsys.readouterr().out
    assert "alias of densenet121" in out and "1000 classes" in out and "input 224x224x3" in out
    rows = _table(out)
    assert list(rows) == ["stem", *(f"stages/{i}" for i in range(4)), "norm5", "head", "total"]
    assert rows["stem"][:2] == ["stem", "(1, 56, 56, 64)"]
    assert rows["stages/3"][:2] == ["stage4", "(1, 7, 7, 1024)"]
    assert rows["norm5"][:2] == ["-", "-"]  # its output is part of stage4
    assert rows["head"][:3] == ["logits", "(1, 1000)", "1,025,000"]
    assert rows["total"][2] == "7,978,856"  # = timm / Keras trainable
    assert "pre_logits (1, 1024)" in out


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_unit_rows_add_up_to_the_registry_counts(name):
    from flax import nnx

    from jaxcls.models import layers

    rows = summary.summarize(name, num_classes=1000)
    *units, total = rows
    model = cli.abstract_model(name, num_classes=1000)
    assert total["unit"] == "total" and "other" not in [r["unit"] for r in units]
    assert sum(r["trainable"] for r in units) == total["trainable"] == cli.param_count(model)
    # Non-trainable = the BatchNorm running statistics, every value once.
    bn_values = sum(
        m.mean.size + m.var.size
        for _, m in nnx.iter_graph(model)
        if isinstance(m, layers.BatchNorm | nnx.BatchNorm)
    )
    assert bn_values > 0
    assert sum(r["non_trainable"] for r in units) == total["non_trainable"] == bn_values
    assert total["bytes"] == 4 * (total["trainable"] + total["non_trainable"])
    assert total["mb"] == pytest.approx(sum(r["mb"] for r in units))
    # Stage rows carry the shapes of the features they produce.
    shapes = cli.feature_shapes(model, 224)
    stage_rows = [r for r in units if r["unit"].startswith(("stem", "stages/"))]
    assert [r["feature"] for r in stage_rows] == [
        "stem",
        *(f"stage{i + 1}" for i in range(len(stage_rows) - 1)),
    ]
    for row in stage_rows:
        assert row["shape"] == shapes[row["feature"]]
    assert units[-1]["unit"] == "head" and units[-1]["shape"] == (1, 1000)
    assert units[-1]["trainable"] == model.head.kernel.size + model.head.bias.size


def test_parameters_in_no_unit_get_an_other_row():
    import jax.numpy as jnp
    from flax import nnx

    from jaxcls.models import layers

    class Odd(nnx.Module):
        def __init__(self, rngs):
            self.stem = layers.ConvNormAct(3, 4, 3, rngs=rngs)
            self.extras = nnx.List([nnx.Param(jnp.zeros(5))])  # a list of no modules: no unit
            self.head = nnx.Linear(4, 2, rngs=rngs)
            self.default_cam_layer = "stem"

        def __call__(self, x, *, train):
            x = self.stem(x, train=train)
            pooled = x.mean((1, 2)) + self.extras[0][...][:4].sum()
            return self.head(pooled), {"stem": x, "pre_logits": pooled}

    model = nnx.eval_shape(lambda: Odd(nnx.Rngs(0)))
    rows = summary.summarize_model(model, 8)
    by_unit = {r["unit"]: r for r in rows}
    assert list(by_unit) == ["stem", "head", "other", "total"]
    assert by_unit["other"]["trainable"] == 5 and by_unit["stem"]["shape"] == (1, 8, 8, 4)
    assert by_unit["total"]["trainable"] == cli.param_count(model)


def test_module_runs_as_a_program():
    r = subprocess.run(
        [sys.executable, "-m", "jaxcls.models", "--name", "vgg16", "--size", "64"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rows = _table(r.stdout)
    assert rows["stages/4"][:2] == ["stage5", "(1, 4, 4, 512)"]
    assert rows["total"][2:4] == ["138,357,544", "0"]
    assert "GFLOPs: " in r.stdout and "64x64" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "resnet51"], "unknown model 'resnet51'. Did you mean: resnet50"),
        (["--name", "inception_v3", "--size", "16"], "inception_v3 cannot take a 16x16 input"),
        (["--name", "vgg16", "--size", "16"], "vgg16 cannot take a 16x16 input"),
        (["--name", "resnet18", "--size", "0"], "resnet18 cannot take a 0x0 input"),
        (["--name", "resnet18", "--size", "big"], "argument --size: invalid int value"),
    ],
)
def test_bad_name_or_size_is_one_line_and_exit_code_2(args, message):
    r = subprocess.run(
        [sys.executable, "-m", "jaxcls.models", *args, "--no_flops"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("python -m jaxcls.models: error: ") and message in lines[0]
    assert r.stdout == ""


def test_a_classifier_built_for_one_size_rejects_another():
    model = cli.abstract_model("cnn_conv4invto128", num_classes=10)
    with pytest.raises(summary.InputSizeError, match="input_size=128"):
        summary.check_input_size(model, 64, "cnn_conv4invto128")
    assert summary.check_input_size(model, 128)["logits"] == (1, 10)
