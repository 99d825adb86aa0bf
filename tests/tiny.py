"""A tiny model and batches shared by the step and checkpoint tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcls.trainer import steps


class Tiny(nnx.Module):
    """Conv + BatchNorm + dropout + linear: exercises every kind of state the step handles."""

    def __init__(self, rngs: nnx.Rngs, num_classes: int = 3):
        self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.head = nnx.Linear(16, num_classes, rngs=rngs)

    def __call__(self, x, *, train: bool):
        x = nnx.relu(self.bn(self.conv(x), use_running_average=not train))
        f = x.mean((1, 2))
        return self.head(self.drop(f, deterministic=not train)), {"stage1": x, "pre_logits": f}


def make(mesh, lr=0.05):
    model = Tiny(nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.sgd(lr, momentum=0.9)
    compiled = steps.CompiledSteps(
        mesh=mesh, graphdef=graphdef, tx=tx, schedule=optax.constant_schedule(lr), num_classes=3
    )
    state = jax.device_put(
        steps.create_train_state(params, rest, tx, seed=0), compiled.state_sharding
    )
    return compiled, state


def host(tree):
    """Device tree -> numpy, typed PRNG keys as their raw data."""

    def leaf(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(leaf, tree)


def batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = rng.normal(size=(n, 8, 8, 3)).astype(np.float32) + labels[:, None, None, None]
    return {"image": images, "label": labels}
