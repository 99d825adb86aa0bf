"""The trainer's real train step, set up for benchmarks (compare, A/B variants, profiles)."""

from __future__ import annotations


def sgd_steps(mesh, graphdef, num_classes: int):
    """``(tx, make_steps)``: SGD + momentum, and a factory of fresh ``steps.CompiledSteps`` (each
    traced on its first call) for ``graphdef`` on ``mesh``."""
    import optax

    from jaxcls.trainer import steps as steps_lib

    tx = optax.sgd(0.01, momentum=0.9)

    def make_steps():
        return steps_lib.CompiledSteps(
            mesh=mesh,
            graphdef=graphdef,
            tx=tx,
            schedule=optax.constant_schedule(0.01),
            num_classes=num_classes,
        )

    return tx, make_steps


def random_batch(mesh, batch: int, size: int, num_classes: int, *, mask: bool = False):
    """A seeded random batch sharded over ``mesh`` (with an all-ones ``mask`` for the eval step
    when ``mask``)."""
    import numpy as np

    from jaxcls.trainer import parallel

    rng = np.random.default_rng(0)
    data = {
        "image": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, num_classes, batch).astype(np.int32),
    }
    if mask:
        data["mask"] = np.ones(batch, np.float32)
    return parallel.shard_batch(data, mesh)


def train_setup(name: str, batch: int, size: int, *, mask: bool = False, devices: int = 1):
    """The trainer's real train step for benchmarks: ``(params, rest, tx, make_steps, batch)``
    for model ``name`` at 1000 classes with SGD + momentum, data-parallel over the first
    ``devices`` devices (0: all)."""
    from flax import nnx

    from jaxcls import models
    from jaxcls.trainer import parallel

    mesh = parallel.make_mesh(devices)
    model = models.create(name, num_classes=1000, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, make_steps = sgd_steps(mesh, graphdef, 1000)
    return params, rest, tx, make_steps, random_batch(mesh, batch, size, 1000, mask=mask)


def initial_state(make_steps_result, params, rest, tx):
    """A train state for ``CompiledSteps`` placed with its sharding (own buffers: steps donate)."""
    import jax

    from jaxcls.trainer import steps as steps_lib

    state = jax.tree.map(lambda a: a.copy(), steps_lib.create_train_state(params, rest, tx, 0))
    return jax.device_put(state, make_steps_result.state_sharding)
