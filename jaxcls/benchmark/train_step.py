"""The trainer's real train step, set up for benchmarks (models, A/B variants, profiles)."""

from __future__ import annotations


def train_setup(name: str, batch: int, size: int, *, mask: bool = False, devices: int = 1):
    """The trainer's real train step for benchmarks: ``(params, rest, tx, make_steps, batch)``
    for model ``name`` at 1000 classes with SGD + momentum, data-parallel over the first
    ``devices`` devices (0: all).

    ``make_steps()`` returns a fresh ``steps.CompiledSteps`` (traced on its first call); ``batch``
    is a sharded random batch (with an all-ones ``mask`` when ``mask``, for the eval step).
    """
    import numpy as np
    import optax
    from flax import nnx

    from jaxcls import models
    from jaxcls.trainer import parallel
    from jaxcls.trainer import steps as steps_lib

    mesh = parallel.make_mesh(devices)
    model = models.create(name, num_classes=1000, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(0.01, momentum=0.9)

    def make_steps():
        return steps_lib.CompiledSteps(
            mesh=mesh,
            graphdef=graphdef,
            tx=tx,
            schedule=optax.constant_schedule(0.01),
            num_classes=1000,
        )

    rng = np.random.default_rng(0)
    data = {
        "image": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 1000, batch).astype(np.int32),
    }
    if mask:
        data["mask"] = np.ones(batch, np.float32)
    return params, rest, tx, make_steps, parallel.shard_batch(data, mesh)


def setup_for(graphdef, params, rest, num_classes: int, batch: int, size: int):
    """The trainer's real train step for an existing split model on one device:
    ``(compiled_steps, state, batch_data)`` with SGD + momentum and a random batch."""
    import numpy as np
    import optax

    from jaxcls.trainer import parallel
    from jaxcls.trainer import steps as steps_lib

    mesh = parallel.make_mesh(1)
    tx = optax.sgd(0.01, momentum=0.9)
    compiled = steps_lib.CompiledSteps(
        mesh=mesh,
        graphdef=graphdef,
        tx=tx,
        schedule=optax.constant_schedule(0.01),
        num_classes=num_classes,
    )
    rng = np.random.default_rng(0)
    data = {
        "image": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, num_classes, batch).astype(np.int32),
    }
    return compiled, initial_state(compiled, params, rest, tx), parallel.shard_batch(data, mesh)


def initial_state(make_steps_result, params, rest, tx):
    """A train state for ``CompiledSteps`` placed with its sharding (own buffers: steps donate)."""
    import jax

    from jaxcls.trainer import steps as steps_lib

    state = jax.tree.map(lambda a: a.copy(), steps_lib.create_train_state(params, rest, tx, 0))
    return jax.device_put(state, make_steps_result.state_sharding)
