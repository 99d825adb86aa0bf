"""The training loop moves nothing between host and device implicitly: batches arrive on device
from the prefetcher, the step takes and returns device arrays, and the only host reads are the
explicit, logged metric fetches (``jax.device_get``) and checkpoints. An implicit transfer (a
Python scalar or NumPy array fed to a jitted step, a ``float(x)`` on a device array) would stall
an accelerator every step; ``jax.transfer_guard('disallow')`` turns each one into an error."""

import jax

from jaxcls.trainer import loop
from jaxcls.trainer import run as train
from tests.small import small_config


def test_train_loop_runs_under_disallow_transfer_guard(tmp_path, monkeypatch):
    guarded_steps = []
    original = loop._Loop._train_step

    def guarded(self, state):
        with jax.transfer_guard("disallow"):
            state = original(self, state)
        guarded_steps.append(self.step)
        return state

    original_run = loop._Loop.run

    def guarded_run(self, state, sigterm):
        # The whole loop too: logging, per-epoch evaluation and checkpoints included.
        with jax.transfer_guard("disallow"):
            return original_run(self, state, sigterm)

    monkeypatch.setattr(loop._Loop, "_train_step", guarded)
    monkeypatch.setattr(loop._Loop, "run", guarded_run)
    results = train.run(small_config(num_epochs=1, **{"efficiency.enabled": False}), str(tmp_path))
    assert results["steps_run"] == results["steps_per_epoch"]
    assert len(guarded_steps) == results["steps_run"]


def test_guard_catches_an_implicit_transfer():
    """The guard is live in this setup: a NumPy argument to a jitted function is refused."""
    import numpy as np
    import pytest

    f = jax.jit(lambda x: x + 1)
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        f(np.ones(3, np.float32))
