"""Fine-tuning plans: which parameters train in which phase, at which learning rate.

A model's parameters fall into three groups, by path:

- ``head``: the classifier (``model.head``) and the head's hidden dense layers
  (``model.head_hidden``, from ``config.model.head``), always trained;
- ``backbone``: the backbone units allowed to train (all of them, or the top N);
- ``frozen``: backbone units that never train (their BatchNorm layers stay in inference mode, as
  Keras does for layers with ``trainable=False``).

Backbone *units* are the model's top-level parameter groups in forward order: ``stem``,
``stages/0`` ... ``stages/K``, then e.g. ``conv_head`` (see `backbone_units`, defined with the
models in ``jaxcls.models.registry``). "Unfreeze the top N" counts units from the end
(``train_top``), or, the way Keras users write ``for layer in base_model.layers[-N:]``, layers
with weights (``train_top_layers``; see `weighted_layers`: each conv, BatchNorm and dense layer is
one, in the order the forward pass uses them; docs/finetuning.md maps Keras' counts to ours).

``freeze_bn_stats`` keeps every backbone BatchNorm in inference mode for the whole run (its scale
and bias still train): the Keras fine-tuning advice, since batch statistics of a small new dataset
would shift the features the pretrained layers and the new head were fitted to.

The two-phase recipe (head first, then the network at a lower rate) is ``head_epochs`` > 0: during
the first phase only the head trains and the whole backbone is frozen (BatchNorm in inference mode);
from the phase boundary the ``backbone`` group trains too and all rates are scaled by
``phase2_lr_mult``. Each phase is one jitted step (compiled once per phase); frozen parameters get
no gradient computation at all (their gradient is dead code that XLA removes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend as jex
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import layers
from jaxcls.models.registry import HEAD, HEAD_PARTS, backbone_units

GROUPS = ("head", "backbone", "frozen")


def _key_name(k: Any) -> Any:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def path_of(keypath: tuple) -> tuple:
    """A jax key path as plain names, without the trailing ``value`` of an nnx Variable."""
    path = tuple(_key_name(k) for k in keypath)
    if path and isinstance(keypath[-1], jax.tree_util.GetAttrKey) and path[-1] == "value":
        path = path[:-1]
    return path


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase: from ``start_step``, which groups train, which units are frozen."""

    name: str
    start_step: int
    trainable: tuple[str, ...]  # groups that get gradients
    frozen_units: tuple[tuple, ...]  # units whose BatchNorm runs in inference mode (frozen
    # units, and every unit when freeze_bn_stats is set)


@dataclasses.dataclass(frozen=True)
class Plan:
    units: tuple[tuple, ...]
    trainable_units: tuple[tuple, ...]  # units, or layers with train_top_layers
    phases: tuple[Phase, ...]
    head_steps: int
    backbone_lr_mult: float
    phase2_lr_mult: float
    freeze_bn_stats: bool = False
    frozen_parts: tuple[tuple, ...] = ()  # backbone units or layers that never train

    @property
    def is_plain(self) -> bool:
        """Everything trains from step 0 at one rate: no labels or masks needed."""
        return (
            len(self.phases) == 1
            and set(self.trainable_units) == set(self.units)
            and self.backbone_lr_mult == 1.0
            and not self.freeze_bn_stats
        )

    def label(self, path: tuple) -> str:
        if path and path[0] in HEAD_PARTS:
            return "head"
        for unit in self.trainable_units:
            if path[: len(unit)] == unit:
                return "backbone"
        for unit in self.units:
            if path[: len(unit)] == unit:
                return "frozen"
        raise ValueError(f"parameter {'/'.join(map(str, path))} is in no backbone unit or head")

    def labels(self, params: Any) -> Any:
        """A pytree like ``params`` with each leaf's group name."""
        return jax.tree_util.tree_map_with_path(lambda kp, _: self.label(path_of(kp)), params)

    def phase_at(self, step: int) -> Phase:
        """The phase that trains the step taken from ``state.step == step``."""
        return self.phases[phase_index([p.start_step for p in self.phases], step)]


def phase_index(starts: Sequence[int], step: int) -> int:
    """Which phase trains the step taken from ``state.step == step``, given the phases' start
    steps: the last one started by then (the first one before any has started). The one rule for
    `Plan.phase_at` and the trainer's choice of jitted step (`CompiledSteps.train_fn`)."""
    index = 0
    for i, start in enumerate(starts):
        if step >= start:
            index = i
    return index


def weighted_layers(model: nnx.Module, image_size: Sequence[int]) -> list[tuple]:
    """The backbone's layers with weights in forward order: Keras' layer count for fine-tuning.

    A layer is a module holding parameters itself (a conv with its bias, a BatchNorm, a dense
    layer), named by its path (``('stages', 3, 0, 'conv_pw')``). The order is the order in which
    the eval-mode forward pass on a ``image_size`` image first uses each layer's parameters (nnx
    keeps no definition order); the head's layers and layers the forward pass does not use
    (Inception's auxiliary classifier at inference) are left out.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    paths = [path_of(kp) for kp, _ in jax.tree_util.tree_leaves_with_path(params)]

    def forward(params, rest, x):
        return nnx.merge(graphdef, params, rest, copy=True)(x, train=False)

    h, w = image_size
    x = jax.ShapeDtypeStruct((1, int(h), int(w), 3), jnp.float32)
    jaxpr = jax.make_jaxpr(forward)(params, rest, x).jaxpr
    invar_path = dict(zip(jaxpr.invars[: len(paths)], paths, strict=True))
    order: dict[tuple, int] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for var in eqn.invars:
            path = invar_path.get(var) if isinstance(var, jex.core.Var) else None
            if path is not None and path[0] not in HEAD_PARTS:
                order.setdefault(path[:-1], i)
    return sorted(order, key=order.__getitem__)


def _trainable_parts(model, units, ft_cfg, image_size) -> tuple[tuple, tuple]:
    """``(trainable, frozen)`` backbone parts: units (``train_top``) or layers
    (``train_top_layers``: the frozen ones are the other layers and units with no traced layer)."""
    train_top = int(ft_cfg.train_top)
    top_layers = int(ft_cfg.train_top_layers)
    if top_layers < 0:
        raise ValueError(f"finetune.train_top_layers must be >= 0, got {top_layers}")
    if top_layers:
        if train_top != -1:
            raise ValueError(
                f"finetune.train_top={train_top} and finetune.train_top_layers={top_layers} are "
                "both set: train_top counts backbone stages, train_top_layers layers with "
                "weights; set one (train_top=-1 is unset)"
            )
        if image_size is None:
            raise ValueError("finetune.train_top_layers needs the image size to order the layers")
        in_order = weighted_layers(model, image_size)
        trainable = tuple(in_order[max(len(in_order) - top_layers, 0) :])
        frozen = tuple(p for p in in_order if p not in trainable)
        untraced = tuple(u for u in units if not any(p[: len(u)] == u for p in in_order))
        return trainable, frozen + untraced
    if train_top < 0 or train_top >= len(units):
        trainable = units
    else:
        trainable = units[len(units) - train_top :] if train_top else ()
    return trainable, tuple(u for u in units if u not in trainable)


def make_plan(
    model: nnx.Module,
    ft_cfg: Any,
    *,
    steps_per_epoch: int,
    total_steps: int,
    image_size: Sequence[int] | None = None,
) -> Plan:
    """The plan from ``config.finetune`` (head_epochs, train_top or train_top_layers,
    backbone_lr_mult, phase2_lr_mult, freeze_bn_stats); its defaults train everything from step 0
    at one rate. ``image_size`` (H, W) is needed by ``train_top_layers`` (`weighted_layers`)."""
    units = tuple(backbone_units(model))
    if not hasattr(model, HEAD):
        raise ValueError(f"{type(model).__name__} has no 'head' attribute to fine-tune")
    # Frozen parts keep their BatchNorm in inference mode in the fine-tuning phase.
    trainable, frozen_parts = _trainable_parts(model, units, ft_cfg, image_size)
    head_steps = int(round(float(ft_cfg.head_epochs) * steps_per_epoch))
    if head_steps >= total_steps and total_steps > 0 and trainable:
        raise ValueError(
            f"finetune.head_epochs={ft_cfg.head_epochs} leaves no steps for the second phase "
            f"({total_steps} steps in all); lower it or raise num_epochs"
        )
    freeze_bn = bool(ft_cfg.freeze_bn_stats)
    phases = []
    if head_steps > 0:
        phases.append(Phase("head", 0, ("head",), units))
    phases.append(
        Phase(
            "fine_tune",
            head_steps,
            ("head", "backbone"),
            units if freeze_bn else frozen_parts,
        )
    )
    return Plan(
        units=units,
        trainable_units=trainable,
        phases=tuple(phases),
        head_steps=head_steps,
        backbone_lr_mult=float(ft_cfg.backbone_lr_mult),
        phase2_lr_mult=float(ft_cfg.phase2_lr_mult),
        freeze_bn_stats=freeze_bn,
        frozen_parts=frozen_parts,
    )


def module_at(model: nnx.Module, path: tuple) -> Any:
    """The attribute at a unit's path (``('stages', 2)``) or a layer's (``('stages', 2, 0, 'bn1')``)."""
    module = model
    for key in path:
        module = module[key] if isinstance(key, int) else getattr(module, key)
    return module


def phase_graphdef(model: nnx.Module, phase: Phase) -> Any:
    """The model's graphdef for ``phase``: BatchNorm of frozen units fixed in inference mode.

    Leaves ``model`` itself unchanged.
    """
    frozen = set(phase.frozen_units)
    touched = []
    for unit in frozen:
        module = module_at(model, unit)
        if not isinstance(module, nnx.Module):
            continue
        for _, sub in nnx.iter_graph(module):
            if isinstance(sub, layers.BatchNorm) and not sub.frozen:
                sub.frozen = True
                touched.append(sub)
            elif isinstance(sub, nnx.BatchNorm):
                raise ValueError(
                    "fine-tuning with frozen parts needs jaxcls.models.layers.BatchNorm, "
                    f"found flax nnx.BatchNorm in unit {unit}"
                )
    try:
        graphdef = nnx.split(model, nnx.Param, ...)[0]
    finally:
        for sub in touched:
            sub.frozen = False
    return graphdef
