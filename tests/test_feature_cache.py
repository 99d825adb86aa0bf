"""Cached-feature linear probes (finetune.cache_features): the head trained on features computed
once equals the head trained through the frozen backbone, also across a resume; and the settings
under which caching would change the result are refused with the reason."""

import numpy as np
import pytest

from jaxcls.trainer import run as train
from tests import small
from tests.test_finetune import params_at

PROBE = {
    "finetune.train_top": 0,
    "model.head": (24,),
    "model.head_dropout": 0.3,  # the head's own randomness stays in the cached step
    "optimizer.schedule": "constant",
    "optimizer.learning_rate": 0.02,
    "optimizer.warmup_epochs": 0.0,
    "eval_batch_size": 48,  # the last eval batch is padded
    "data.max_per_class": 60,  # 600 of digits' images: a short test
}


def probe(**kw):
    return small.small_config(**{**PROBE, **kw})


def test_cached_probe_equals_the_uncached_run_also_when_resumed(tmp_path):
    plain = train.run(probe(num_epochs=2), str(tmp_path / "plain"))
    cached_dir = str(tmp_path / "cached")
    first = train.run(probe(num_epochs=1, **{"finetune.cache_features": True}), cached_dir)
    spe = first["steps_per_epoch"]
    assert first["steps_run"] == spe
    cached = train.run(probe(num_epochs=2, **{"finetune.cache_features": True}), cached_dir)

    assert plain["feature_cache"] is None
    with open(f"{cached_dir}/splits/train.csv") as f:
        n_train = sum(1 for _ in f) - 1  # the header
    assert cached["feature_cache"]["train"] == [n_train, 64]  # cnn_small pools 64 channels
    assert cached["feature_cache"]["val"][1] == 64
    # One program computed the rows, one evaluated the head on them (validation and the final
    # evaluation); the full forward pass was never compiled.
    compiled = cached["compilations"]
    assert (compiled["features"], compiled["eval_features"], compiled["eval"]) == (1, 1, 0)

    p_plain, r_plain = params_at(str(tmp_path / "plain"), 2 * spe)
    p_cached, r_cached = params_at(cached_dir, 2 * spe)
    assert set(p_plain) == set(p_cached)
    for k in p_plain:
        np.testing.assert_allclose(p_cached[k], p_plain[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in r_plain:  # BatchNorm statistics untouched by both
        np.testing.assert_array_equal(r_cached[k], r_plain[k], err_msg=k)
    assert not np.allclose(p_cached["head/kernel"], params_at(cached_dir, spe)[0]["head/kernel"])

    for row_plain, row_cached in zip(plain["history"], cached["history"], strict=True):
        for k in ("val/loss", "val/accuracy", "train/loss"):
            assert row_cached[k] == pytest.approx(row_plain[k], rel=1e-5, abs=1e-6), k
    for split in ("train", "val", "test"):
        assert cached["splits"][split]["accuracy"] == pytest.approx(
            plain["splits"][split]["accuracy"], abs=1e-9
        )
    # The probe learned something (on a random-init backbone: the loss falls, slowly).
    assert plain["history"][1]["train/loss"] < plain["history"][0]["train/loss"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"finetune.train_top": -1}, "needs a frozen backbone"),
        ({"data.train_pipeline": "decode|resize(16)|flip_lr|value_range(-1, 1)"}, "random ops"),
        ({"data.mixup": 0.2}, "unmixed images"),
        ({"model.name": "resnet18", "model.drop_path_rate": 0.1}, "random layers"),
    ],
)
def test_settings_that_would_change_the_result_are_refused(tmp_path, overrides, message):
    config = probe(num_epochs=1, **{"finetune.cache_features": True, **overrides})
    with pytest.raises(ValueError, match=message):
        train.run(config, str(tmp_path))
