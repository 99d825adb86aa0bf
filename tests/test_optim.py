"""The optimizer factory: schedules, weight-decay masks, clipping, errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxcls import config_base
from jaxcls.trainer import optim


def opt_cfg(**kw):
    c = ml_collections.ConfigDict(config_base.base_config().optimizer.to_dict())
    c.update(kw)
    return c


def test_warmup_then_cosine_to_floor():
    s = optim.make_schedule(
        opt_cfg(learning_rate=0.1, warmup_epochs=1.0, min_lr_ratio=0.01),
        steps_per_epoch=10,
        total_steps=100,
    )
    assert float(s(0)) == pytest.approx(0.01)  # base / warmup steps
    assert float(s(10)) == pytest.approx(0.1)
    assert float(s(5)) < float(s(10))
    assert float(s(100)) == pytest.approx(0.001, rel=1e-3)
    assert float(s(55)) < 0.1


def test_step_schedule_drops_at_epochs():
    s = optim.make_schedule(
        opt_cfg(
            learning_rate=1.0,
            schedule="step",
            warmup_epochs=0.0,
            step_epochs=(2, 4),
            step_factor=0.1,
        ),
        steps_per_epoch=10,
        total_steps=60,
    )
    assert [round(float(s(i)), 6) for i in (0, 19, 20, 39, 40, 59)] == [
        1.0,
        1.0,
        0.1,
        0.1,
        0.01,
        0.01,
    ]


def test_constant_schedule():
    s = optim.make_schedule(
        opt_cfg(learning_rate=0.3, schedule="constant", warmup_epochs=0),
        steps_per_epoch=5,
        total_steps=50,
    )
    assert float(s(0)) == pytest.approx(0.3) and float(s(49)) == pytest.approx(0.3)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_weight_decay_skips_biases_and_norms(name):
    params = {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,)), "scale": jnp.ones((3,))}
    tx, _ = optim.make_optimizer(
        opt_cfg(
            name=name, learning_rate=0.1, weight_decay=0.5, warmup_epochs=0, schedule="constant"
        ),
        steps_per_epoch=1,
        total_steps=10,
    )
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, state, params)
    new = optax.apply_updates(params, updates)
    assert float(jnp.max(new["kernel"])) < 1.0  # decayed
    np.testing.assert_array_equal(new["bias"], params["bias"])
    np.testing.assert_array_equal(new["scale"], params["scale"])


def test_clip_norm_bounds_the_gradient():
    params = {"w": jnp.zeros((4, 4))}
    tx, _ = optim.make_optimizer(
        opt_cfg(
            name="sgd",
            momentum=0.0,
            learning_rate=1.0,
            weight_decay=0,
            clip_norm=1.0,
            warmup_epochs=0,
            schedule="constant",
        ),
        steps_per_epoch=1,
        total_steps=1,
    )
    updates, _ = tx.update({"w": jnp.full((4, 4), 100.0)}, tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_nesterov_differs_from_plain_momentum():
    params = {"w": jnp.ones((2, 2))}
    g = {"w": jnp.ones((2, 2))}
    outs = []
    for nesterov in (False, True):
        tx, _ = optim.make_optimizer(
            opt_cfg(
                name="sgd", nesterov=nesterov, weight_decay=0, warmup_epochs=0, schedule="constant"
            ),
            steps_per_epoch=1,
            total_steps=3,
        )
        s = tx.init(params)
        u, s = tx.update(g, s, params)
        outs.append(float(u["w"][0, 0]))
    assert outs[0] != outs[1]


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="adamw"):
        optim.make_optimizer(opt_cfg(name="adamx"), steps_per_epoch=1, total_steps=1)
    with pytest.raises(ValueError, match="cosine"):
        optim.make_schedule(opt_cfg(schedule="cosin"), steps_per_epoch=1, total_steps=1)


def test_plateau_lowers_the_rate_only_after_patience_stalls_and_floors_at_min_lr():
    """ReduceLROnPlateau: the update shrinks by plateau_factor once val/loss has not improved
    (by more than 1e-4) for plateau_patience validations, never below plateau_min_lr; the
    jitted update compiles once because the scale is optimizer state."""
    cfg = opt_cfg(
        name="sgd",
        momentum=0.0,
        weight_decay=0.0,
        learning_rate=0.1,
        schedule="plateau",
        warmup_epochs=0.0,
        plateau_factor=0.5,
        plateau_patience=2,
        plateau_min_lr=0.02,
    )
    tx, schedule = optim.make_optimizer(cfg, steps_per_epoch=10, total_steps=100)
    params = {"w": jnp.ones((2, 2))}
    grads = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return tx.update(grads, state, params)

    def rate(state):
        updates, _ = step(state)
        return -float(updates["w"][0, 0])  # sgd: update = -lr * grad, grad 1.

    rates, scales = [], []
    # Improves, improves, stalls (1), a tiny 5e-5 gain is still a stall (2) -> x0.5, stalls (1),
    # stalls (2) -> x0.5 -> 0.025, then stalls would go to 0.0125 but min_lr floors at 0.02.
    for value in (1.0, 0.9, 0.95, 0.89995, 0.93, 0.92, 0.95, 0.96):
        rates.append(rate(state))
        state = optim.plateau_update(cfg, state, value)
        scales.append(float(optim.lr_scale(state)))
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6)
    np.testing.assert_allclose(scales, [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.2], rtol=1e-6)
    assert rate(state) == pytest.approx(0.02)
    assert len(traces) == 1
    assert float(schedule(50) * optim.lr_scale(state)) == pytest.approx(0.02)  # The logged rate.
    # Other schedules have no plateau state: the scale is 1 and plateau_update changes nothing.
    plain, _ = optim.make_optimizer(opt_cfg(), steps_per_epoch=10, total_steps=100)
    s = plain.init(params)
    assert float(optim.lr_scale(s)) == 1.0
    jax.tree.map(np.testing.assert_array_equal, optim.plateau_update(cfg, s, 5.0), s)
