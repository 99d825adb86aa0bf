"""A study's variants: the --grid syntax, variants crossed with the grid, every override checked
against the config, and bad input on the command line as one line with exit code 2."""

import os
import subprocess
import sys

import pytest

from jaxcls.config_base import study_config
from jaxcls.study import spec, table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_grid_values_are_literals_or_words():
    grid = spec.parse_grid(
        "optimizer.learning_rate=[5e-4, 2e-4]; data.rebalance=[up,mean];"
        "model.filters=[(16, 32), (32, 64, 128)]; data.scan=[True,False]"
    )
    assert grid == {
        "optimizer.learning_rate": [5e-4, 2e-4],
        "data.rebalance": ["up", "mean"],
        "model.filters": [(16, 32), (32, 64, 128)],
        "data.scan": [True, False],
    }


@pytest.mark.parametrize(
    "text, says",
    [
        ("optimizer.learning_rate=5e-4", "values must be a list in brackets"),
        ("optimizer.learning_rate", "is not 'field.name=[v1,v2,...]'"),
        ("1x=[1]", "is not 'field.name=[v1,v2,...]'"),
        ("seed=[]", "the list of values is empty"),
        ("seed=[1];seed=[2]", "names seed twice"),
    ],
)
def test_malformed_grid_says_what_is_wrong(text, says):
    with pytest.raises(spec.StudyError, match=says.replace("[", r"\[").replace("(", r"\(")):
        spec.parse_grid(text)


def _study(**variants):
    c = study_config()
    c.model.name = "cnn_small"
    c.study.variants = variants
    c.lock()
    return c


def test_variants_cross_the_grid_and_override_the_base_in_order():
    c = _study(small={"model": {"head": (8,)}}, wide={"model": {"filters": (32, 64)}})
    variants = spec.expand(c, "optimizer.learning_rate=[1e-3,3e-4]")
    assert [v.name for v in variants] == [
        "small_learning_rate=0.001",
        "small_learning_rate=0.0003",
        "wide_learning_rate=0.001",
        "wide_learning_rate=0.0003",
    ]
    config = spec.variant_config(c, variants[3].overrides)
    assert config.model.filters == (32, 64) and config.optimizer.learning_rate == 3e-4
    assert config.model.head is None  # another variant's override does not leak into this one
    assert "study" not in config and "smoke" not in config
    # A grid alone names the variants by their values; no variants and no grid: the base.
    assert [v.name for v in spec.expand(_study(), "seed=[1,2]")] == ["seed=1", "seed=2"]
    assert [v.name for v in spec.expand(_study())] == ["base"]


def test_text_values_name_top_level_fields_and_the_image_size():
    c = study_config()
    c.cinic10 = "folder:/data/cinic10"
    c.lock()
    config = spec.variant_config(
        c, {"eval.dataset": "{cinic10}/test", "data.eval_pipeline": "decode|resize({image_size})"}
    )
    assert config.eval.dataset == "folder:/data/cinic10/test"
    assert config.data.eval_pipeline == f"decode|resize({c.data.image_size})"
    with pytest.raises(spec.StudyError, match="cannot fill in 'cifar'; known names: "):
        spec.variant_config(c, {"eval.dataset": "{cifar}"})


def test_an_override_of_no_config_field_is_an_error_naming_the_fields():
    c = _study()
    with pytest.raises(spec.StudyError, match="optimizer.learnin_rate is not a config field; "):
        spec.variant_config(c, {"optimizer.learnin_rate": 1e-3})
    with pytest.raises(spec.StudyError, match="nosuch.x is not a config field"):
        spec.variant_config(c, {"nosuch.x": 1})
    with pytest.raises(spec.StudyError, match="num_epochs="):
        spec.variant_config(c, {"num_epochs": "ten"})


def test_a_variant_whose_model_cannot_be_built_is_named():
    c = _study(bad={"model": {"filters": ()}})
    config = spec.variant_config(c, spec.expand(c)[0].overrides)
    with pytest.raises(spec.StudyError, match="variant bad: "):
        spec.check_variant("bad", config, num_classes=3)
    ok = spec.variant_config(c, {"data.eval_pipeline": "decode|no_such_op(1)"})
    with pytest.raises(spec.StudyError, match="variant ok: .*no_such_op"):
        spec.check_variant("ok", ok, num_classes=3)


def test_metrics_by_key_split_name_or_word():
    assert table.resolve_metric("val/accuracy") == "val_accuracy"
    assert table.resolve_metric("latency") == "latency_b1_p50_ms"
    assert table.resolve_metric("size") == "checkpoint_mb"
    assert table.resolve_metric("cross-dataset") == "cross_accuracy"
    with pytest.raises(spec.StudyError, match="unknown metric 'speed'; known: val_accuracy"):
        table.resolve_metric("speed")


STUDY = os.path.join(ROOT, "configs", "studies", "animals15_effnet_b0.py")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--config=configs/studies/no_such_study.py"], "no_such_study.py"),
        ([f"--config={STUDY}", "--grid=optimizer.lr=[1,2]"], "optimizer.lr is not a config field"),
        ([f"--config={STUDY}", "--metric=speed"], "unknown metric 'speed'"),
    ],
)
def test_bad_input_on_the_command_line_is_one_line_and_exit_code_2(tmp_path, args, says):
    command = [sys.executable, "-m", "jaxcls.study", f"--workdir={tmp_path}", *args]
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("study: error: ") and says in lines[0], lines
    assert not os.listdir(tmp_path)  # nothing ran
