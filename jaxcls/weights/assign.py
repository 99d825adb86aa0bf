"""The one strict assignment of saved arrays to a model's variables.

Every path that fills an NNX model from arrays goes through `assign`: a converted weight file
(`convert`), a jaxcls checkpoint as a run's initial weights (`trainer.weights_init`) and a
checkpoint restored for inference (`explain.inference`). Every parameter and BatchNorm statistic
of the model must be given with its exact shape; the only exception is an explicitly allowed
fresh classifier (a new head for another number of classes).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcls.weights.errors import WeightsError

Path = tuple[str, ...]


@dataclasses.dataclass
class Assigned:
    """What `assign` filled: tensors and values, and the paths that kept their fresh values."""

    tensors: int
    values: int
    fresh: list[Path]


def model_variables(model: nnx.Module) -> nnx.State:
    """The variables weights fill: parameters and BatchNorm statistics (not RNG streams)."""
    return nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))


def flatten(tree: Any, prefix: Path = ()) -> dict[Path, Any]:
    """A saved nested dict -> ``{('stage1', '0', 'conv', 'kernel'): array}``.

    Keys become strings (Orbax saves list indices as strings), and a leaf saved as an NNX
    variable (``{'value': array}``) becomes its array.
    """
    if isinstance(tree, dict) and set(tree) == {"value"}:
        tree = tree["value"]
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, (*prefix, str(k))))
        return out
    if tree is None or not hasattr(tree, "shape"):
        return {}
    return {prefix: tree}


def assign(
    model: nnx.Module,
    values: dict[Path, np.ndarray],
    *,
    what: str,
    fresh_ok: tuple[str, ...] = (),
    error: type[Exception] = WeightsError,
) -> Assigned:
    """Sets every parameter and BatchNorm statistic of ``model`` from ``values``, in place.

    Args:
      model: a concrete model, or an abstract one from ``nnx.eval_shape``.
      values: path (a tuple of strings) -> array; extra entries (e.g. RNG keys) are ignored.
      what: how the error names the values (e.g. ``'the weights of checkpoint /x'``).
      fresh_ok: top-level names (e.g. ``('head',)``) whose variables keep their fresh values when
        they are not given or given with another shape.
      error: the exception type raised when something is missing or has another shape.

    Returns:
      `Assigned`: what was filled, and the paths kept fresh.
    """
    state = model_variables(model)
    chosen, fresh, missing, mismatched = {}, [], [], []
    for path, var in nnx.to_flat_state(state):
        key = tuple(str(p) for p in path)
        got, shape = values.get(key), tuple(var.get_value().shape)
        if got is None and key[0] in fresh_ok:
            fresh.append(key)
        elif got is None:
            missing.append("/".join(key))
        elif tuple(got.shape) == shape:
            chosen[tuple(path)] = jnp.asarray(got, var.get_value().dtype)
        elif key[0] in fresh_ok:
            fresh.append(key)
        else:
            mismatched.append(f"{'/'.join(key)}: given {tuple(got.shape)}, model {shape}")
    if missing or mismatched:
        raise error(
            f"{what} do not fit the model: "
            + "; ".join([f"missing {m}" for m in missing[:10]] + mismatched[:10])
            + (" ..." if len(missing) > 10 or len(mismatched) > 10 else "")
        )
    _set(model, state, chosen)
    sizes = [int(np.prod(v.shape)) for v in chosen.values()]
    return Assigned(tensors=len(chosen), values=sum(sizes), fresh=sorted(fresh))


def _set(model: nnx.Module, state: nnx.State, values: dict[tuple, jax.Array]) -> None:
    pure = nnx.to_pure_dict(state)
    for path, value in values.items():
        node = pure
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
