"""Converting a weight file into one of our models: read, map names, apply layouts, assign.

``load_pretrained(model, model_name, source, path)`` fills every parameter and BatchNorm statistic
of ``model`` from the file, strictly (see :func:`jaxcls.weights.layout.strict_assign`). With
``skip_head=True`` (fine-tuning on other classes) the classifier keeps its fresh initialisation and
the file's classifier tensors are the only ones allowed to stay unused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxcls.models.registry import HEAD, HEAD_HIDDEN
from jaxcls.weights import layout, maps
from jaxcls.weights.assign import assign, model_variables
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.readers import read_weights


@dataclasses.dataclass
class ConversionReport:
    """What a conversion matched, for logs and ``tools/convert_weights.py``."""

    source: str
    model: str
    path: str
    matched: list[tuple[str, str, str]]  # (our path, source name, rule)
    ignored: list[str]  # source tensors deliberately unused (e.g. num_batches_tracked, head)
    skipped_head: bool
    num_params: int

    def summary(self) -> str:
        head = " (classifier left at its fresh initialisation)" if self.skipped_head else ""
        return (
            f"{self.source} -> {self.model}: {len(self.matched)} tensors matched, "
            f"{self.num_params:,} values, {len(self.ignored)} source tensors ignored{head}"
        )


def model_targets(model: nnx.Module) -> dict[tuple, jax.ShapeDtypeStruct]:
    """Every parameter and BatchNorm statistic of ``model``: path -> shape/dtype (also for an
    abstract model from ``nnx.eval_shape``, which conversion then fills without a random init)."""
    values = ((tuple(path), v.get_value()) for path, v in nnx.to_flat_state(model_variables(model)))
    return {path: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype) for path, x in values}


def _is_abstract(model: nnx.Module) -> bool:
    flat = nnx.to_flat_state(model_variables(model))
    return any(isinstance(v.get_value(), jax.ShapeDtypeStruct) for _, v in flat)


def load_weights_into(
    model: nnx.Module,
    model_name: str,
    source: str,
    weights: dict[str, np.ndarray],
    *,
    skip_head: bool = False,
    path: str = "",
) -> ConversionReport:
    """Assigns already-read ``weights`` (source names) to ``model`` in place; returns a report."""
    if source == "keras":  # Keras 3 index names, TF-era depthwise_kernel: one naming.
        weights = layout.keras_names(weights)
    # The head's hidden layers (config.model.head) are ours: no weight file has them.
    target = {p: v for p, v in model_targets(model).items() if p[0] != HEAD_HIDDEN}
    weights = maps.canonical_names(source, model_name, weights)
    name_map, ignore = maps.build(source, model_name, target)
    ignore = list(ignore)
    if skip_head and _is_abstract(model):
        raise WeightsError(
            f"{model_name}: skip_head keeps the classifier's initialisation, so the model must be "
            "built concretely (not under nnx.eval_shape)"
        )
    if skip_head:
        for p in [p for p in target if p[0] == HEAD]:
            del target[p]
            ignore.append(name_map.pop(p)[0])
    assigned = layout.strict_assign(target, weights, name_map, ignore=ignore)
    fresh = (HEAD, HEAD_HIDDEN) if skip_head else (HEAD_HIDDEN,)
    given = {tuple(str(k) for k in p): v for p, v in assigned.items()}
    assign(model, given, what=f"the {source} weights for {model_name}", fresh_ok=fresh)
    used = {src for src, _ in name_map.values()}
    return ConversionReport(
        source=source,
        model=model_name,
        path=path,
        matched=[(layout.path_str(p), *name_map[p]) for p in sorted(assigned, key=str)],
        ignored=sorted(n for n in weights if n not in used),
        skipped_head=skip_head,
        num_params=int(sum(a.size for a in assigned.values())),
    )


def load_pretrained(
    model: nnx.Module, model_name: str, source: str, path: str, *, skip_head: bool = False
) -> ConversionReport:
    """Reads ``path`` (never executing code from it) and loads it into ``model`` strictly."""
    return load_weights_into(
        model, model_name, source, read_weights(path), skip_head=skip_head, path=path
    )


def create_pretrained(
    model_name: str,
    source: str,
    path: str,
    *,
    num_classes: int = 1000,
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[nnx.Module, ConversionReport]:
    """Builds ``model_name`` and loads ``path`` into it (the classifier too when the file's
    class count equals ``num_classes``, otherwise the classifier stays freshly initialised)."""
    from jaxcls import models

    model = models.create(
        model_name, num_classes=num_classes, rngs=nnx.Rngs(seed), **(model_kwargs or {})
    )
    weights = read_weights(path)
    head_shape = model_targets(model)[(HEAD, "kernel")].shape
    skip = not head_matches(weights, head_shape)
    report = load_weights_into(model, model_name, source, weights, skip_head=skip, path=path)
    return model, report


def head_matches(weights: dict[str, np.ndarray], head_shape: tuple[int, ...]) -> bool:
    """Whether some 2-D tensor of the file has the classifier's shape (in either layout)."""
    return any(w.ndim == 2 and w.shape in (head_shape, head_shape[::-1]) for w in weights.values())
