"""The trainer end to end on the built-in digits data: learning, the results contract, 1 vs 8
devices, exact resume after preemption, compile-once, and clear errors for bad configuration."""

import csv
import json
import os
import signal

import jax
import numpy as np
import pytest

from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.trainer import parallel
from jaxcls.trainer import run as train
from tests.small import small_config


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One uninterrupted 3-epoch run on 8 devices, shared by several tests."""
    workdir = str(tmp_path_factory.mktemp("baseline"))
    results = train.run(small_config(), workdir)
    return workdir, results


def test_run_learns_and_writes_the_workdir_contract(baseline):
    workdir, results = baseline
    on_disk = json.load(open(os.path.join(workdir, "results.json")))
    for key in (
        "model",
        "num_devices",
        "epochs_run",
        "best_step",
        "train_images_per_sec",
        "splits",
    ):
        assert key in on_disk, key
    assert on_disk["num_devices"] == 8
    assert on_disk["epochs_run"] == 3
    test = on_disk["splits"]["test"]
    assert {"accuracy", "macro_f1", "loss"} <= set(test)
    assert test["accuracy"] > 0.6  # chance is 0.1
    assert on_disk["train_images_per_sec"] > 0
    for split in ("train", "val", "test"):
        assert os.path.getsize(os.path.join(workdir, "splits", f"{split}.csv")) > 0
    assert any(
        f.startswith("events.out.tfevents")
        for f in os.listdir(os.path.join(workdir, "tensorboard"))
    )
    assert os.listdir(os.path.join(workdir, "checkpoints", "latest"))
    assert results["compilations"] == {"train": 1, "eval": 1}
    assert len(on_disk["history"]) == 3 and on_disk["history"][-1]["epoch"] == 3


def test_results_and_the_runs_table_record_the_runs_efficiency(baseline):
    """The efficiency block: what the trained model costs to use, measured on this device."""
    from flax import nnx

    from jaxcls import models

    workdir, _ = baseline
    eff = json.load(open(os.path.join(workdir, "results.json")))["efficiency"]
    model = models.create("cnn_small", num_classes=10, rngs=nnx.Rngs(0))
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    n_stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert eff["params_trainable"] == n_params and eff["params_non_trainable"] == n_stats
    assert eff["platform"] == "cpu" and eff["devices"] == 8
    for key in ("gflops", "latency_b1_p50_ms", "infer_img_s", "xla_memory_mb",
                "process_peak_rss_mb", "compile_b1_s", "train_compile_s"):  # fmt: skip
        assert eff[key] > 0, key
    assert eff["latency_b1_p90_ms"] >= eff["latency_b1_p50_ms"]
    # The best checkpoint holds the parameters and Adam's two moments: at least 3 x 4 bytes each.
    assert eff["checkpoint_mb"] * 2**20 > 3 * 4 * n_params
    with open(os.path.join(os.path.dirname(workdir), "runs.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["workdir"] == os.path.abspath(workdir)]
    assert rows and int(float(rows[-1]["params_trainable"])) == n_params
    assert float(rows[-1]["latency_b1_p50_ms"]) > 0 and float(rows[-1]["checkpoint_mb"]) > 0


def test_rerun_of_a_finished_run_does_not_train_again(baseline, tmp_path):
    workdir, results = baseline
    again = train.run(small_config(), workdir)
    assert again["steps_run"] == results["steps_run"]
    assert again["splits"]["test"] == results["splits"]["test"]


def test_one_device_matches_eight_devices(baseline, tmp_path):
    _, results8 = baseline
    results1 = train.run(small_config(num_devices=1), str(tmp_path))
    assert results1["num_devices"] == 1
    losses8 = [h["train/loss"] for h in results8["history"]]
    losses1 = [h["train/loss"] for h in results1["history"]]
    # The first epoch (39 steps) agrees tightly; float reduction order then lets the runs drift
    # apart slowly (the step-level test in test_steps.py checks single steps to 1e-5).
    np.testing.assert_allclose(losses1[0], losses8[0], rtol=2e-4)
    np.testing.assert_allclose(losses1, losses8, rtol=3e-2)
    np.testing.assert_allclose(
        results1["splits"]["test"]["accuracy"], results8["splits"]["test"]["accuracy"], atol=0.02
    )


def test_preempted_run_resumes_exactly(baseline, tmp_path, monkeypatch):
    """SIGTERM mid-epoch -> checkpoint + exit code; the rerun ends with identical parameters."""
    workdir_ref, results_ref = baseline
    workdir = str(tmp_path)
    original = parallel.DevicePrefetcher.__next__
    drawn = {"n": 0}

    def next_and_signal(self):
        item = original(self)
        drawn["n"] += 1
        if drawn["n"] == 25:  # The signal arrives while step 25 runs.
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", next_and_signal)
    with pytest.raises(train.Preempted) as info:
        train.run(small_config(), workdir)
    assert info.value.code == train.PREEMPTED_EXIT_CODE
    assert info.value.step == 25
    monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", original)
    resumed = train.run(small_config(), workdir)
    assert resumed["steps_run"] == results_ref["steps_run"]
    assert resumed["splits"] == results_ref["splits"]
    assert [h["train/loss"] for h in resumed["history"]] == [
        h["train/loss"] for h in results_ref["history"]
    ]
    # Final parameters are bit-identical to the uninterrupted run's.
    a = _final_params(workdir_ref)
    b = _final_params(workdir)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _final_params(workdir):
    import orbax.checkpoint as ocp

    latest = os.path.join(workdir, "checkpoints", "latest")
    step = max(int(d) for d in os.listdir(latest) if d.isdigit())
    with ocp.StandardCheckpointer() as c:
        return c.restore(os.path.join(latest, str(step), "state"))["params"]


def test_unknown_model_name_lists_known_models(tmp_path):
    with pytest.raises(ValueError, match="resnet50"):
        train.run(small_config(**{"model.name": "resnet5O"}), str(tmp_path))


def test_missing_dataset_folder_is_named(tmp_path):
    missing = str(tmp_path / "no_such_dir")
    with pytest.raises((ValueError, FileNotFoundError), match="no_such_dir"):
        train.run(small_config(dataset=f"folder:{missing}"), str(tmp_path / "w"))


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train.run(small_config(batch_size=30), str(tmp_path))


def test_checkpoint_meta_describes_the_model(baseline):
    workdir, _ = baseline
    latest = os.path.join(workdir, "checkpoints", "latest")
    step = max(int(d) for d in os.listdir(latest) if d.isdigit())
    meta = ckpt_lib.read_meta(os.path.join(latest, str(step)))
    assert meta["model"] == "cnn_small"
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["eval_pipeline"] and meta["image_size"] == [16, 16]


def test_tensorboard_has_the_training_scalars(baseline):
    from tensorboard.backend.event_processing import event_accumulator

    workdir, _ = baseline
    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/accuracy",
        "train/learning_rate",
        "train/images_per_sec",
        "val/accuracy",
    ):
        assert tag in tags, (tag, sorted(tags))


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    # A zero learning rate cannot improve val accuracy after the first epoch.
    results = train.run(
        small_config(
            num_epochs=6,
            **{
                "optimizer.learning_rate": 0.0,
                "optimizer.weight_decay": 0.0,
                "early_stopping.patience": 2,
            },
        ),
        str(tmp_path),
    )
    # (BatchNorm statistics still move at a zero learning rate, so the best epoch may be 1 or 2.)
    best_epoch = results["best_step"] // results["steps_per_epoch"]
    assert results["stopped_early"] is True
    assert results["epochs_run"] == best_epoch + 2 < 6


def test_min_delta_counts_only_improvements_larger_than_it():
    from jaxcls.trainer.loop import epochs_without_improvement

    history = [{"epoch": e, "val/accuracy": a} for e, a in enumerate([0.5, 0.52, 0.53, 0.6], 1)]
    assert epochs_without_improvement(history, "val/accuracy", "max", 0.0) == 0
    # +0.02 and +0.01 are not improvements by more than 0.05; +0.1 over 0.5 is.
    assert epochs_without_improvement(history[:3], "val/accuracy", "max", 0.05) == 2
    assert epochs_without_improvement(history, "val/accuracy", "max", 0.05) == 0
    losses = [{"epoch": e, "val/loss": v} for e, v in enumerate([1.0, float("nan"), 0.99], 1)]
    assert epochs_without_improvement(losses, "val/loss", "min", 0.0) == 0
    assert epochs_without_improvement(losses, "val/loss", "min", 0.05) == 2  # NaN never counts


def test_a_min_delta_no_epoch_can_reach_stops_training_after_patience(tmp_path):
    # Accuracy is at most 1, so nothing improves by more than 1.0 on the first epoch's value.
    results = train.run(
        small_config(
            num_epochs=6, **{"early_stopping.patience": 2, "early_stopping.min_delta": 1.0}
        ),
        str(tmp_path),
    )
    assert results["stopped_early"] is True and results["epochs_run"] == 3
    assert len(results["history"]) == 3


def test_bfloat16_compute_trains(tmp_path):
    results = train.run(small_config(num_epochs=1, **{"model.dtype": "bfloat16"}), str(tmp_path))
    assert results["bad_steps"] == 0
    assert np.isfinite(results["splits"]["test"]["loss"])
    assert results["splits"]["train"]["accuracy"] > 0.3
