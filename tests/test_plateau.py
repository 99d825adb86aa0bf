"""The 'plateau' schedule inside a real run: the rate drops when val/loss stalls and not before,
the train step logs it, and a run preempted after the drop resumes with the reduced rate."""

import os
import signal
import types

import jax
import jax.numpy as jnp
import pytest

from jaxcls.trainer import loop, optim, parallel, setup
from tests.small import small_config

LR = 0.01
# Scripted val/loss per validation: first value, stall (patience 1) -> x0.1 in epoch 3, improves.
VAL_LOSSES = [1.0, 1.1, 0.8]


def plateau_config():
    return small_config(
        num_epochs=3,
        **{
            "data.train_fraction": 0.25,  # ~9 steps per epoch.
            "optimizer.name": "sgd",
            "optimizer.learning_rate": LR,
            "optimizer.schedule": "plateau",
            "optimizer.warmup_epochs": 0.0,
            "optimizer.plateau_patience": 1,
            "efficiency.enabled": False,
            "num_devices": 1,  # One device compiles and runs faster; 8 are tested elsewhere.
        },
    )


@pytest.fixture
def scripted_val_loss(monkeypatch):
    """The training loop's validation reports the next scripted val/loss (the real metrics
    otherwise), so the stall is certain; final evaluation is untouched."""
    real = loop.eval_loop.evaluate_split
    script = []

    def evaluate_split(run, params, rest, split, features=None):
        out = real(run, params, rest, split, features)
        if split == "val" and script:
            out["metrics"]["loss"] = script.pop(0)
        return out

    monkeypatch.setattr(loop, "eval_loop", types.SimpleNamespace(evaluate_split=evaluate_split))
    return script


def test_plateau_lowers_the_rate_after_a_stall_and_resume_keeps_it(
    scripted_val_loss, tmp_path, monkeypatch
):
    """The drop is decided by the stall at the end of epoch 2 and checkpointed with it; a run
    preempted in epoch 3 resumes at the reduced rate (the resumed loop itself only sees an
    improving val/loss) only if the plateau state came back from the checkpoint with the
    optimizer state. (The resume reuses the run's compiled steps to save a compilation: it
    restores the latest checkpoint from disk exactly as a new process does.)"""
    original = parallel.DevicePrefetcher.__next__
    drawn = {"n": 0}

    def next_and_signal(self):
        item = original(self)
        drawn["n"] += 1
        if drawn["n"] == 2 * spe + 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return item

    the_run, state = setup.setup_run(plateau_config(), str(tmp_path))
    spe = the_run.steps_per_epoch
    assert spe == 9  # 25% of digits' 70% train split, batch 32.
    fresh = jax.tree.map(jnp.copy, state)  # The train step donates (deletes) `state`.
    try:
        monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", next_and_signal)
        scripted_val_loss[:] = VAL_LOSSES[:2]
        with pytest.raises(loop.Preempted) as info:
            loop.train_loop(the_run, state, None, None)
        assert info.value.step == 2 * spe + 2
        monkeypatch.setattr(parallel.DevicePrefetcher, "__next__", original)
        scripted_val_loss[:] = VAL_LOSSES[2:]
        state, data_state, meta = setup.restore(the_run, fresh)
        assert int(state.step) == 2 * spe + 2
        state, history, _ = loop.train_loop(the_run, state, data_state, meta)
    finally:
        the_run.checkpoints.close()
    assert [h["val/loss"] for h in history] == VAL_LOSSES
    # Full rate while val/loss improves; x0.1 after the stall, not before.
    rates = [round(h["train/learning_rate"] / LR, 6) for h in history]
    assert rates == [1.0, 1.0, 0.1]
    assert float(optim.lr_scale(state.opt_state)) == pytest.approx(0.1)
