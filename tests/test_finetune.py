"""Fine-tuning: plans over backbone units, frozen parts that never change (BatchNorm included),
per-group learning rates, the two-phase recipe, and starting from a checkpoint."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import cnn as cnn_config
from jaxcls import config_base, models
from jaxcls.reporting import plots
from jaxcls.trainer import finetune, optim, weights_init
from jaxcls.trainer import run as train
from tests import small


def ft(**kw):
    c = ml_collections.ConfigDict(config_base.base_config().finetune.to_dict())
    c.update(kw)
    return c


def lite0():
    return nnx.eval_shape(
        lambda: models.create("efficientnet_lite0", num_classes=10, rngs=nnx.Rngs(0))
    )


def test_units_are_in_forward_order_without_the_head():
    units = finetune.backbone_units(lite0())
    assert units[0] == ("stem",) and units[-1] == ("conv_head",)
    assert units[1:-1] == [("stages", i) for i in range(7)]


def test_train_top_n_labels_the_top_units_only():
    model = lite0()
    plan = finetune.make_plan(model, ft(train_top=2), steps_per_epoch=10, total_steps=100)
    params = nnx.state(model, nnx.Param)
    labels = {
        "/".join(map(str, finetune.path_of(kp))): label
        for kp, label in jax.tree_util.tree_leaves_with_path(plan.labels(params))
    }
    assert labels["head/kernel"] == "head"
    assert all(
        v == "backbone" for k, v in labels.items() if k.startswith(("conv_head", "stages/6"))
    )
    assert all(
        v == "frozen" for k, v in labels.items() if k.startswith(("stem", "stages/0", "stages/5"))
    )
    assert not plan.is_plain


def test_two_phase_schedules_and_backbone_multiplier():
    model = lite0()
    plan = finetune.make_plan(
        model,
        ft(head_epochs=2, phase2_lr_mult=0.1, backbone_lr_mult=0.5),
        steps_per_epoch=10,
        total_steps=100,
    )
    assert [p.start_step for p in plan.phases] == [0, 20]
    opt = ml_collections.ConfigDict(config_base.base_config().optimizer.to_dict())
    opt.update(learning_rate=1.0, warmup_epochs=0.0, schedule="constant")
    s = optim.group_schedules(opt, plan, steps_per_epoch=10, total_steps=100)
    assert float(s["head"](5)) == pytest.approx(1.0) and float(s["backbone"](5)) == 0.0
    assert float(s["head"](50)) == pytest.approx(0.1)
    assert float(s["backbone"](50)) == pytest.approx(0.05)


def test_head_epochs_must_leave_a_second_phase():
    with pytest.raises(ValueError, match="head_epochs"):
        finetune.make_plan(lite0(), ft(head_epochs=10), steps_per_epoch=10, total_steps=100)


def small_config(**kw):
    return small.small_config(**{"num_epochs": 2, **kw})


def flat(tree):
    """{'a/b/c': array} from nested dicts whose keys may be ints or strings."""
    out = {}
    for kp, v in jax.tree_util.tree_leaves_with_path(tree):
        key = "/".join(str(finetune._key_name(k)) for k in kp)
        if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):  # a dropout stream's key
            v = jax.random.key_data(v)
        out[key.removesuffix("/value")] = np.asarray(v)  # raw checkpoints keep Variable.value
    return out


def params_at(workdir, step):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as c:
        tree = c.restore(os.path.join(workdir, "checkpoints", "latest", str(step), "state"))
    return flat(tree["params"]), flat(tree["rest"])


def initial(config):
    parts = train.create_model(config, 10, (16, 16), steps_per_epoch=39, total_steps=78)
    return flat(nnx.to_pure_dict(parts.params)), flat(nnx.to_pure_dict(parts.rest))


def backbone(p):
    return {k: v for k, v in p.items() if not k.startswith(("head/", "head_hidden/"))}


def bn_stats(r):
    return {k: v for k, v in r.items() if k.endswith(("/mean", "/var"))}


def assert_same(a, b):
    assert set(a) == set(b) and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_head_phase_freezes_the_backbone_and_its_batchnorm(tmp_path):
    config = small_config(**{"finetune.head_epochs": 1.0, "finetune.phase2_lr_mult": 0.5})
    results = train.run(config, str(tmp_path))
    assert results["compilations"]["train"] == 2  # one per phase
    assert results["finetune_phase_starts"] == [0, 39]
    p0, r0 = initial(config)
    p39, r39 = params_at(str(tmp_path), 39)
    p78, r78 = params_at(str(tmp_path), 78)
    assert_same(backbone(p39), backbone(p0))  # backbone untouched in phase 1
    assert_same(bn_stats(r39), bn_stats(r0))  # and its BatchNorm statistics too
    assert not np.array_equal(p39["head/kernel"], p0["head/kernel"])
    assert any(not np.array_equal(p78[k], p39[k]) for k in backbone(p39))
    assert any(not np.array_equal(r78[k], r39[k]) for k in bn_stats(r39))
    assert results["splits"]["test"]["accuracy"] > 0.5
    # The history records each epoch's phase, and the training curves mark the change.
    assert [row["phase"] for row in results["history"]] == ["head", "fine_tune"]
    fig = plots.training_curves(results["history"])
    assert (1.5, 1.5) in [tuple(line.get_xdata()) for line in fig.axes[0].lines]
    assert any("fine_tune" in t.get_text() for t in fig.axes[0].texts)


def test_linear_probe_with_frozen_batchnorm_never_changes_the_backbone(tmp_path):
    config = small_config(
        **{"finetune.train_top": 0, "finetune.freeze_bn_stats": True, "num_epochs": 1}
    )
    train.run(config, str(tmp_path))
    p0, r0 = initial(config)
    p, r = params_at(str(tmp_path), 39)
    assert_same(backbone(p), backbone(p0))
    assert_same(bn_stats(r), bn_stats(r0))
    assert not np.array_equal(p["head/kernel"], p0["head/kernel"])


def test_init_from_a_checkpoint_keeps_the_backbone_and_makes_a_new_head(tmp_path):
    first = str(tmp_path / "first")
    train.run(small_config(num_epochs=1), first)
    trained, _ = params_at(first, 39)
    config = small_config(**{"init.checkpoint": first})
    parts = train.create_model(config, 3, (16, 16))  # another dataset with 3 classes
    assert parts.init["new_head"] is True
    got = flat(nnx.to_pure_dict(parts.params))
    assert_same(backbone(got), backbone(trained))
    assert got["head/kernel"].shape[-1] == 3


def test_pretrained_tag_sets_model_conventions_and_pipelines():
    c = cnn_config.get_config()
    c.unlock()
    c.model.name = ""
    c.init.pretrained = "efficientnet_pytorch:efficientnet-lite0"
    c.data.image_size = 64
    c.lock()
    r = weights_init.resolve_config(c)
    assert r.model.name == "efficientnet_lite0"
    assert r.model.padding == "same_tf"
    assert "normalize" in r.data.train_pipeline and "flip_lr" not in r.data.train_pipeline  # digits
    assert "center_crop(64)" in r.data.train_pipeline  # same geometry as evaluation
    assert "center_crop(64)" in r.data.eval_pipeline
    c.unlock()
    c.model.name = "resnet50"
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        weights_init.resolve_config(c)


def test_train_top_layers_and_train_top_are_exclusive():
    with pytest.raises(ValueError, match="train_top=2 and finetune.train_top_layers=5"):
        finetune.make_plan(
            lite0(), ft(train_top=2, train_top_layers=5), steps_per_epoch=10, total_steps=100
        )


def test_train_top_layers_unfreezes_the_top_layers_with_weights():
    model = lite0()
    plan = finetune.make_plan(
        model, ft(train_top_layers=3), steps_per_epoch=10, total_steps=100, image_size=(64, 64)
    )
    # The Keras order: ... block7a_project_conv, block7a_project_bn, top_conv, top_bn.
    assert plan.trainable_units == (
        ("stages", 6, 0, "bn3"),
        ("conv_head", "conv"),
        ("conv_head", "bn"),
    )
    labels = {
        "/".join(map(str, finetune.path_of(kp))): label
        for kp, label in jax.tree_util.tree_leaves_with_path(
            plan.labels(nnx.state(model, nnx.Param))
        )
    }
    assert {k for k, v in labels.items() if v == "backbone"} == {
        "stages/6/0/bn3/scale", "stages/6/0/bn3/bias", "conv_head/conv/kernel",
        "conv_head/bn/scale", "conv_head/bn/bias",
    }  # fmt: skip
    assert labels["stages/6/0/conv_pwl/kernel"] == "frozen" and labels["head/kernel"] == "head"
    assert ("stages", 6, 0, "conv_pwl") in plan.phases[-1].frozen_units  # BN of frozen layers:
    assert ("conv_head", "bn") not in plan.phases[-1].frozen_units  # inference mode


def test_dense_head_trains_alone_then_with_the_top_layers(tmp_path):
    """A new Dense(32) + Dropout head: phase 1 trains the head's hidden layer and classifier only;
    phase 2 also the top 2 layers with weights (and their BatchNorm statistics), nothing else."""
    config = small_config(
        **{
            "model.head": (32,),
            "model.head_dropout": 0.2,
            "finetune.head_epochs": 1.0,
            "finetune.train_top_layers": 2,
            "batch_size": 128,
            "efficiency.enabled": False,
        }
    )
    results = train.run(config, str(tmp_path))
    spe = results["finetune_phase_starts"][1]
    assert results["finetune_phase_starts"] == [0, spe] and spe > 0
    parts = train.create_model(config, 10, (16, 16), steps_per_epoch=spe, total_steps=2 * spe)
    p0, r0 = flat(nnx.to_pure_dict(parts.params)), flat(nnx.to_pure_dict(parts.rest))
    assert p0["head_hidden/dense/0/kernel"].shape == (64, 32) and p0["head/kernel"].shape == (
        32,
        10,
    )
    p1, r1 = params_at(str(tmp_path), spe)
    p2, r2 = params_at(str(tmp_path), 2 * spe)
    assert_same(backbone(p1), backbone(p0))
    assert_same(bn_stats(r1), bn_stats(r0))
    for key in ("head_hidden/dense/0/kernel", "head/kernel"):
        assert not np.array_equal(p1[key], p0[key]), key
        assert not np.array_equal(p2[key], p1[key]), key
    top = ("stages/2/0/conv/", "stages/2/0/bn/")  # cnn_small's top 2 layers with weights
    changed = {k for k in backbone(p2) if not np.array_equal(p2[k], p1[k])}
    assert changed == {k for k in backbone(p2) if k.startswith(top)}
    stats_changed = {k for k in bn_stats(r2) if not np.array_equal(r2[k], r1[k])}
    assert stats_changed == {k for k in bn_stats(r2) if k.startswith(top)}
