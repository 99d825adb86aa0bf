"""Abstract models (``nnx.eval_shape``: shapes only, no allocation), built once per process.

The contract tests and the parameter-count tests both need every registry model abstractly, at
1000 classes; building the big ones takes seconds (EfficientNet-B7, EfficientNetV2-L), so they
share one cached build. Callers must not mutate the returned model.
"""

import functools

import jax.numpy as jnp
from flax import nnx

from jaxcls import models


@functools.cache
def _build(name, num_classes, dtype, overrides):
    return nnx.eval_shape(
        lambda: models.create(
            name, num_classes=num_classes, rngs=nnx.Rngs(0), dtype=dtype, **dict(overrides)
        )
    )


def abstract_model(name: str, num_classes: int = 1000, dtype=jnp.float32, **overrides):
    """The model ``name`` built abstractly with these arguments (cached)."""
    return _build(name, num_classes, jnp.dtype(dtype), tuple(sorted(overrides.items())))
