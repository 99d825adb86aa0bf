"""Each study in configs/studies/ runs in smoke mode, in-process, to its table and plots.

Every variant of each study is built and its model created abstractly (`run.build`); for CI time
one representative variant is trained (a couple of compiled programs per variant on a loaded
CPU). Where a study has only ImageNet backbones (B3, B0), the test trains ``cnn_small`` in their
place with the study's head, fine-tuning phases, pipelines and data layout; the backbones with
those heads and phases are tested in tests/models and tests/test_finetune.py.
"""

import csv
import importlib
import json

import pytest

from jaxcls.study import run

CASES = {  # study -> (the variant trained, model name trained in place of the backbone)
    "animals10_cnn_grid": ("conv4to128_d256_gap", ""),
    "animals10_preprocessed": ("preprocessed", "cnn_small"),
    "cifar10_cinic10": ("cnn_cinic10_to_cifar10", ""),
    "animals15_effnet_b0": ("top20", "cnn_small"),
    "flowers_inception": ("cnn_dropout", ""),
}


def smoke_config(name: str, variant: str, model: str):
    config = importlib.import_module(f"configs.studies.{name}").get_config()
    config.unlock()
    config.smoke = True
    config.study.subprocess = False
    config.study.smoke_variants = (variant,)
    if model:
        config.study.smoke_overrides.model = {"name": model}
    config.lock()
    return config


@pytest.mark.parametrize("name", list(CASES))
def test_study_runs_in_smoke_mode_to_its_table_and_plots(name, tmp_path):
    variant, model = CASES[name]
    config = smoke_config(name, variant, model)
    assert run.run_study(config, str(tmp_path), title=name) == 0
    with open(tmp_path / "study.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [variant] and rows[0]["status"] == "done"
    metric = {"cifar10_cinic10": "cross_accuracy"}.get(name, "test_accuracy")
    assert 0.0 <= float(rows[0][metric]) <= 1.0
    assert f"{name} (smoke mode): 1 variants" in (tmp_path / "study.md").read_text()
    for png in ("study_curves.png", f"bar_{metric}.png", "bar_params_trainable.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    results = json.loads((tmp_path / variant / "results.json").read_text())
    assert results["dataset"].startswith(f"folder:{tmp_path}/smoke_data/")
    if name == "cifar10_cinic10":  # trained on CINIC-10's own splits, evaluated on CIFAR-10
        assert results["splits"]["test"]["count"] == 10 * 4  # the test/ folder, kept
        (section,) = results["cross_dataset"].values()
        assert section["examples"] == 10 * 4
    if name == "animals15_effnet_b0":  # its own test/ folder stays the test set
        assert results["splits"]["test"]["count"] == 15 * 5
    if name == "animals10_preprocessed":
        assert "clahe" in (tmp_path / variant / "config.py").read_text()
