"""Any architecture argument from the command line: ``--config.model.<arg>=...`` parses for every
argument of every registered model, reaches the model only when set, and is checked against the
chosen model's signature; a field no model has fails at parse time as one line, exit code 2."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from configs import resnet as resnet_config
from jaxcls import config_base, models
from jaxcls.trainer import setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(*overrides, config="configs/cnn.py"):
    """The config as `python -m jaxcls.main --config=CONFIG OVERRIDES` parses it."""
    argv = ["prog", f"--config={os.path.join(ROOT, config)}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


def test_the_config_lists_every_model_argument():
    assert list(config_base.MODEL_ARGS) == models.all_model_args()


def test_model_arguments_parse_from_the_command_line():
    config = parse(
        "--config.model.name=cnn_small",
        "--config.model.filters=(8,16)",
        "--config.model.padding=valid",
        "--config.model.batch_norm=false",
        "--config.model.head=(32,16)",
        "--config.model.head_dropout=0.25",
        "--config.model.head_pool=flatten",
    )
    kwargs = setup.model_kwargs(config)
    assert kwargs == {
        "filters": (8, 16),
        "padding": "valid",
        "batch_norm": False,
        "head": (32, 16),
        "head_dropout": 0.25,
        "head_pool": "flatten",
    }
    # Unset arguments stay None (the model's default) and never reach the model.
    assert config.model.stem is None and "stem" not in kwargs
    parts = setup.create_model(config, 10, (32, 32))
    assert parts.kwargs == {**kwargs, "input_size": 32}  # what predict/eval rebuild it from
    hidden = parts.params["head_hidden"]["dense"]
    # 'valid' 3x3 convs: 32 -> 30 -> pool 15 -> 13 -> pool 6; flattened 6 * 6 * 16.
    assert hidden[0]["kernel"].shape == (6 * 6 * 16, 32) and hidden[1]["kernel"].shape == (32, 16)
    assert parts.params["head"]["kernel"].shape == (16, 10)


def test_recipes_keep_their_model_arguments():
    assert setup.model_kwargs(resnet_config.get_config()) == {"stem": "imagenet"}
    assert setup.model_kwargs(parse()) == {}


def test_an_argument_the_chosen_model_does_not_take_is_an_error():
    config = parse("--config.model.stem=cifar", "--config.model.growth_rate=8")
    with pytest.raises(ValueError) as e:
        setup.model_kwargs(config)
    assert str(e.value).startswith(
        "config.model.growth_rate, config.model.stem: not an argument of model 'cnn' (CNN); "
        "it takes: act, batch_norm,"
    )


def test_a_field_no_model_has_is_one_line_and_exit_code_2(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxcls.main",
            "--config=configs/cnn.py",
            f"--workdir={tmp_path}",
            "--config.model.head_pol=max",
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(
        "jaxcls: error: --config.model.head_pol=max: the config has no field 'head_pol'"
    )
    assert 'Did you mean "head_pool"' in lines[0]
