"""Orbax checkpoints: round trip, other meshes, best-vs-latest retention, corrupt and partial steps."""

import os
import shutil

import jax
import numpy as np
import pytest

from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.trainer import parallel
from tests.tiny import batch, host, make

META = {"model": "tiny", "class_names": ["a", "b", "c"]}


def trained_state(mesh, steps_=2):
    compiled, state = make(mesh)
    for i in range(steps_):
        state, _ = compiled.train(state, parallel.shard_batch(batch(i), mesh))
    return compiled, state


def store(tmp_path, **kw):
    return ckpt_lib.Checkpoints(str(tmp_path / "checkpoints"), **kw)


def test_round_trip_with_data_state_and_meta(tmp_path):
    mesh = parallel.make_mesh(1)
    compiled, state = trained_state(mesh)
    ck = store(tmp_path)
    ck.save(2, state, {"next_index": 32}, META)
    ck.wait()
    fresh_compiled, fresh = make(mesh)
    step, restored, data_state, meta = ck.restore_latest(
        ckpt_lib.abstract_like(fresh, fresh_compiled.state_sharding)
    )
    assert step == 2 and data_state == {"next_index": 32} and meta == META
    jax.tree.map(np.testing.assert_array_equal, host(restored), host(state))
    assert ckpt_lib.read_meta(os.path.join(ck.latest.directory, "2")) == META
    ck.close()


@pytest.mark.parametrize("restore_devices", [4, 1])
def test_save_on_eight_devices_restore_on_fewer(tmp_path, restore_devices):
    mesh8 = parallel.make_mesh(8)
    _, state = trained_state(mesh8)
    ck = store(tmp_path)
    ck.save(2, state, None, META)
    ck.wait()
    mesh = parallel.make_mesh(restore_devices)
    compiled, fresh = make(mesh)
    _, restored, _, _ = ck.restore_latest(ckpt_lib.abstract_like(fresh, compiled.state_sharding))
    leaf = restored.params["head"]["kernel"][...]
    assert len(leaf.sharding.device_set) == restore_devices
    jax.tree.map(np.testing.assert_array_equal, host(restored), host(state))
    # And the restored state trains on the new mesh.
    restored, m = compiled.train(restored, parallel.shard_batch(batch(5), mesh))
    assert np.isfinite(float(m["loss"]))
    ck.close()


def test_worsening_and_nan_metrics_never_cost_the_latest(tmp_path):
    mesh = parallel.make_mesh(1)
    _, state = trained_state(mesh)
    ck = store(tmp_path, keep=2, keep_best=1)
    values = [0.5, 0.7, 0.6, float("nan"), 0.65]
    for step, v in enumerate(values, start=1):
        ck.save_best(step, state, None, META, {"val/accuracy": v})
        ck.save(step, state, None, META)
    ck.wait()
    assert ck.best_step() == 2
    assert ck.latest.all_steps() == [4, 5]
    assert ck.best.all_steps() == [2]
    assert not ck.is_improvement({"val/accuracy": float("nan")})
    ck.close()


def test_corrupt_latest_falls_back_to_previous_loudly(tmp_path, caplog):
    mesh = parallel.make_mesh(1)
    compiled, state = trained_state(mesh)
    ck = store(tmp_path)
    ck.save(1, state, {"i": 1}, META)
    ck.save(2, state, {"i": 2}, META)
    ck.wait()
    # Corrupt step 2's array data: delete the state item's files.
    shutil.rmtree(os.path.join(ck.latest.directory, "2", "state"))
    abstract = ckpt_lib.abstract_like(state, compiled.state_sharding)
    with caplog.at_level("ERROR"):
        step, _, data_state, _ = ck.restore_latest(abstract)
    assert step == 1 and data_state == {"i": 1}
    assert "checkpoint step 2" in caplog.text
    shutil.rmtree(os.path.join(ck.latest.directory, "1", "state"))
    with pytest.raises(ckpt_lib.CheckpointError, match="step 1"):
        ck.restore_latest(abstract)
    ck.close()


def test_uncommitted_write_leaves_previous_step_restorable(tmp_path):
    """A save killed before its commit leaves only a temporary folder, which is not a step."""
    mesh = parallel.make_mesh(1)
    compiled, state = trained_state(mesh)
    ck = store(tmp_path)
    ck.save(1, state, {"i": 1}, META)
    ck.wait()
    ck.close()
    # What a kill during the write of step 2 leaves behind: Orbax's temporary directory.
    src = os.path.join(tmp_path, "checkpoints", "latest", "1")
    shutil.copytree(
        src, os.path.join(tmp_path, "checkpoints", "latest", "2.orbax-checkpoint-tmp-123")
    )
    ck2 = store(tmp_path)
    step, _, data_state, _ = ck2.restore_latest(
        ckpt_lib.abstract_like(state, compiled.state_sharding)
    )
    assert step == 1 and data_state == {"i": 1}
    ck2.close()


def test_empty_store_restores_nothing(tmp_path):
    mesh = parallel.make_mesh(1)
    compiled, state = make(mesh)
    ck = store(tmp_path)
    assert ck.restore_latest(ckpt_lib.abstract_like(state, compiled.state_sharding)) is None
    ck.close()
