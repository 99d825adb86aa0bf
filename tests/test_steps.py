"""The jitted train/eval steps: learning, compile-once, skipping non-finite steps, 1 vs 8 devices."""

import re

import jax
import numpy as np
import optax
import pytest

from jaxcls.trainer import parallel, steps
from tests.tiny import batch, host, make


def test_loss_decreases_and_step_compiles_once():
    mesh = parallel.make_mesh(1)
    compiled, state = make(mesh)
    b = parallel.shard_batch(batch(), mesh)
    losses = []
    for _ in range(30):
        state, m = compiled.train(state, b)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert compiled.traces["train"] == 1
    assert int(state.step) == 30


def test_batchnorm_stats_update_and_eval_uses_them():
    mesh = parallel.make_mesh(1)
    compiled, state = make(mesh)
    before = jax.device_get(state.rest["bn"]["mean"][...])
    state, _ = compiled.train(state, parallel.shard_batch(batch(), mesh))
    after = jax.device_get(state.rest["bn"]["mean"][...])
    assert not np.allclose(before, after)
    ev = dict(batch(1, 8), mask=np.ones(8, np.float32))
    out = compiled.eval(state.params, state.rest, parallel.shard_batch(ev, mesh))
    out2 = compiled.eval(state.params, state.rest, parallel.shard_batch(ev, mesh))
    np.testing.assert_array_equal(out["logits"], out2["logits"])  # deterministic in eval mode
    assert out["logits"].shape == (8, 3) and out["loss"].shape == (8,)


@pytest.mark.parametrize("impl", ["cond", "select"])
def test_non_finite_step_is_skipped_and_counted(impl):
    mesh = parallel.make_mesh(1)
    with steps.set_skip_impl(impl):
        compiled, state = make(mesh)
        state, _ = compiled.train(state, parallel.shard_batch(batch(), mesh))  # traced here
    good = parallel.shard_batch(batch(), mesh)
    bad_np = batch()
    bad_np["image"][0, 0, 0, 0] = np.nan
    bad = parallel.shard_batch(bad_np, mesh)
    state, _ = compiled.train(state, good)
    params_before, rest_before = host(state.params), host(state.rest)
    opt_before = host(state.opt_state)
    state, m = compiled.train(state, bad)
    state, m = compiled.train(state, bad)
    assert int(state.bad_steps) == 2 and int(state.bad_streak) == 2
    assert float(m["finite_steps"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, host(state.params), params_before)
    jax.tree.map(np.testing.assert_array_equal, host(state.rest), rest_before)
    jax.tree.map(np.testing.assert_array_equal, host(state.opt_state), opt_before)
    state, _ = compiled.train(state, good)
    assert int(state.bad_streak) == 0 and int(state.bad_steps) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state.params)))


def test_eight_devices_match_one_device_on_the_same_global_batch():
    assert jax.device_count() == 8
    results = []
    for n in (1, 8):
        mesh = parallel.make_mesh(n)
        compiled, state = make(mesh)
        losses = []
        for i in range(5):
            state, m = compiled.train(state, parallel.shard_batch(batch(i), mesh))
            losses.append(float(m["loss"]))
        assert len(state.params["head"]["kernel"][...].sharding.device_set) == n
        results.append((np.array(losses), jax.device_get(state.params)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        results[0][1],
        results[1][1],
    )


def test_dropout_key_depends_on_step_only():
    """Two runs from the same state draw the same dropout masks: resume is reproducible."""
    mesh = parallel.make_mesh(1)
    outs = []
    for _ in range(2):
        compiled, state = make(mesh)
        state, m = compiled.train(state, parallel.shard_batch(batch(), mesh))
        outs.append(float(m["loss"]))
    assert outs[0] == outs[1]


def test_label_smoothing_and_class_weights_in_the_loss():
    logits = jax.numpy.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = jax.numpy.array([0, 1])
    plain = steps.classification_loss(logits, {"label": labels}, num_classes=3)
    smooth = steps.classification_loss(
        logits, {"label": labels}, num_classes=3, label_smoothing=0.3
    )
    targets = np.full((2, 3), 0.1)
    targets[0, 0] = targets[1, 1] = 0.8
    expected = -(targets * jax.nn.log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(smooth, expected, rtol=1e-6)
    weighted = steps.classification_loss(
        logits, {"label": labels}, num_classes=3, class_weights=np.array([2.0, 0.5, 1.0])
    )
    np.testing.assert_allclose(weighted, plain * np.array([2.0, 0.5]), rtol=1e-6)
    soft = steps.classification_loss(
        logits,
        {"label": labels, "label_onehot": np.array([[0.5, 0.5, 0], [0, 1.0, 0]])},
        num_classes=3,
    )
    np.testing.assert_allclose(soft[1], plain[1], rtol=1e-6)
    assert soft[0] > plain[0]


def test_a_step_is_finite_only_when_its_loss_and_every_gradient_are():
    grads = {"a": np.ones((3, 4), np.float32), "b": np.zeros(5, np.float32)}
    finite, norm = steps.finite_step(np.float32(0.5), grads)
    assert bool(finite) and np.isclose(float(norm), np.sqrt(12.0))
    for bad in (np.inf, -np.inf, np.nan):
        one_bad = {"a": grads["a"], "b": grads["b"].copy()}
        one_bad["b"][2] = bad  # the loss stays finite
        assert not bool(steps.finite_step(np.float32(0.5), one_bad)[0]), bad
        assert not bool(steps.finite_step(np.float32(bad), grads)[0]), bad
    huge = {"a": np.full(4, 1e20, np.float32)}  # finite, but its norm is not
    assert not bool(steps.finite_step(np.float32(0.5), huge)[0])


@pytest.mark.parametrize(
    "tx", [optax.sgd(0.1, momentum=0.9), optax.adamw(1e-2)], ids=["sgd_momentum", "adamw"]
)
def test_skip_forms_give_the_same_update(tx):
    params = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.ones(4)}
    params = jax.tree.map(jax.numpy.asarray, params)
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
    opt_state = tx.update(grads, tx.init(params), params)[1]  # momentum already non-zero
    run = {
        impl: jax.jit(
            lambda f, i=impl: steps.apply_if_finite(f, tx, grads, params, opt_state, impl=i)
        )
        for impl in ("cond", "select")
    }
    for finite in (True, False):
        out = {impl: jax.device_get(f(jax.numpy.bool_(finite))) for impl, f in run.items()}
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out["cond"], out["select"]
        )
        moved = not np.array_equal(out["cond"][0]["w"], np.asarray(params["w"]))
        assert moved == finite


def test_cond_skip_keeps_the_optimizer_state_in_place_on_cpu():
    """With per-leaf selects XLA:CPU copies each momentum buffer before overwriting it (see
    `steps.apply_if_finite`); inside lax.cond it updates them in place, uncopied."""
    mesh = parallel.make_mesh(1)
    copied = {}
    for impl in ("select", "cond"):
        with steps.set_skip_impl(impl):
            compiled, state = make(mesh)
            hlo = compiled.train.lower(state, parallel.shard_batch(batch(), mesh)).compile()
        copied[impl] = re.findall(r"= \S+ copy\(%state_opt_state\S*\)", hlo.as_text())
    assert len(copied["select"]) == 6  # one per parameter of the tiny model
    assert copied["cond"] == []


def test_skip_impl_auto_is_cond_on_cpu_and_rejects_unknown_names():
    tx = optax.sgd(0.1, momentum=0.9)
    p = {"w": jax.numpy.ones(3)}
    o = tx.init(p)
    prims = lambda **kw: {  # noqa: E731
        e.primitive.name
        for e in jax.make_jaxpr(lambda f: steps.apply_if_finite(f, tx, p, p, o, **kw))(True).eqns
    }
    assert "cond" in prims()
    with steps.set_skip_impl("select"):
        assert "cond" not in prims()
    with pytest.raises(ValueError, match="must be one of"):
        steps.apply_if_finite(True, tx, p, p, o, impl="where")
