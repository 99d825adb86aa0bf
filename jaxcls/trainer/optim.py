"""The optax factory: optimizers, learning-rate schedules, weight-decay masks and clipping.

Everything is built from the ``config.optimizer`` block, with epochs converted to steps here (at
run time), so a command-line override of ``num_epochs`` or ``batch_size`` never leaves a stale
schedule behind.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.contrib

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "constant", "step", "plateau")


def make_schedule(opt_cfg: Any, *, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Learning rate per step: linear warm-up, then cosine decay, constant, or step decay.

    'plateau' is constant here; `plateau_scaling` multiplies it by the reduce-on-plateau scale.

    Args:
      opt_cfg: ``config.optimizer`` (learning_rate, schedule, warmup_epochs, min_lr_ratio,
        step_epochs, step_factor).
      steps_per_epoch: optimizer steps in one epoch.
      total_steps: optimizer steps in the whole run.
    """
    base = float(opt_cfg.learning_rate)
    warmup = int(round(float(opt_cfg.warmup_epochs) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    name = opt_cfg.schedule
    if name == "cosine":
        after = optax.cosine_decay_schedule(
            base, max(total_steps - warmup, 1), alpha=float(opt_cfg.min_lr_ratio)
        )
    elif name in ("constant", "plateau"):
        after = optax.constant_schedule(base)
    elif name == "step":
        boundaries = {
            int(round(float(e) * steps_per_epoch)) - warmup: float(opt_cfg.step_factor)
            for e in opt_cfg.step_epochs
        }
        after = optax.piecewise_constant_schedule(
            base, {b: f for b, f in boundaries.items() if b > 0}
        )
    else:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if warmup <= 0:
        return after
    return optax.join_schedules(
        [optax.linear_schedule(base / max(warmup, 1), base, warmup), after], [warmup]
    )


def _reduce_on_plateau(opt_cfg: Any) -> optax.GradientTransformationExtraArgs:
    """optax's ReduceLROnPlateau with Keras's rule: an improvement is a value lower than the best
    by more than 1e-4; after ``plateau_patience`` values without one the scale is multiplied by
    ``plateau_factor``, never below ``plateau_min_lr / learning_rate``."""
    base = float(opt_cfg["learning_rate"])
    return optax.contrib.reduce_on_plateau(
        factor=float(opt_cfg["plateau_factor"]),
        patience=int(opt_cfg["plateau_patience"]),
        rtol=0.0,
        atol=1e-4,
        min_scale=float(opt_cfg["plateau_min_lr"]) / base if base > 0 else 0.0,
    )


def plateau_scaling(opt_cfg: Any) -> optax.GradientTransformation:
    """The last link of a 'plateau' chain: multiplies the updates by the plateau scale.

    Its state is optax's ``ReduceLROnPlateauState``, so it lives in the optimizer state and is
    checkpointed and restored with it. The train step only reads the scale (the step stays pure
    and compiles once); `plateau_update` changes it once per validation, outside the step.
    """
    plateau = _reduce_on_plateau(opt_cfg)

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates), state

    return optax.GradientTransformation(plateau.init, update)


def _is_plateau(x: Any) -> bool:
    return isinstance(x, optax.contrib.ReduceLROnPlateauState)


def plateau_update(opt_cfg: Any, opt_state: Any, value: float) -> Any:
    """``opt_state`` after feeding the monitored ``value`` (validation loss) to optax's
    reduce-on-plateau logic; unchanged when the chain has no plateau state."""
    keys = ("learning_rate", "plateau_factor", "plateau_patience", "plateau_min_lr")
    update = _plateau_update_fn(tuple(float(opt_cfg[k]) for k in keys))
    return update(opt_state, jnp.asarray(value, jnp.float32))


@functools.lru_cache(maxsize=8)
def _plateau_update_fn(hyper: tuple[float, ...]):
    """One jitted update per set of plateau hyper-parameters (compiled once per run)."""
    lr, factor, patience, min_lr = hyper
    plateau = _reduce_on_plateau(
        {
            "learning_rate": lr,
            "plateau_factor": factor,
            "plateau_patience": patience,
            "plateau_min_lr": min_lr,
        }
    )

    def update(opt_state, value):
        def step(x):
            return plateau.update({}, x, value=value)[1] if _is_plateau(x) else x

        return jax.tree.map(step, opt_state, is_leaf=_is_plateau)

    return jax.jit(update)


def lr_scale(opt_state: Any) -> jax.Array:
    """The plateau scale in ``opt_state`` (1.0 without one): the logged rate is schedule * it."""
    found = [x.scale for x in jax.tree.leaves(opt_state, is_leaf=_is_plateau) if _is_plateau(x)]
    return found[0] if found else jnp.ones((), jnp.float32)


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: kernels (ndim >= 2); not biases or norm scales.

    BatchNorm/LayerNorm scales and all biases are 1-D, so the rank alone separates them; this is the
    rule timm and big_vision use.
    """
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _base_optimizer(opt_cfg: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Weight decay (masked) + the named optimizer driven by ``schedule``."""
    name = opt_cfg.name
    wd = float(opt_cfg.weight_decay)
    if name == "adamw":
        return optax.adamw(
            schedule,
            b1=opt_cfg.b1,
            b2=opt_cfg.b2,
            eps=opt_cfg.eps,
            weight_decay=wd,
            mask=decay_mask,
        )
    parts = []
    if wd > 0:
        parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    if name == "sgd":
        momentum = float(opt_cfg.momentum) or None
        parts.append(optax.sgd(schedule, momentum=momentum, nesterov=bool(opt_cfg.nesterov)))
    elif name == "adam":
        parts.append(optax.adam(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps))
    elif name == "rmsprop":
        parts.append(
            optax.rmsprop(
                schedule,
                decay=opt_cfg.rmsprop_decay,
                eps=opt_cfg.eps,
                momentum=float(opt_cfg.momentum) or None,
            )
        )
    else:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return optax.chain(*parts)


def _scaled(opt_cfg: Any, mult: float) -> Any:
    """A copy of ``config.optimizer`` with ``learning_rate`` times ``mult``."""
    cfg = opt_cfg.copy_and_resolve_references()
    cfg.learning_rate = float(opt_cfg.learning_rate) * mult
    return cfg


def group_schedules(
    opt_cfg: Any, plan: Any, *, steps_per_epoch: int, total_steps: int
) -> dict[str, optax.Schedule]:
    """Learning-rate schedules of the 'head' and 'backbone' groups of a fine-tuning plan.

    Without a head phase both follow the run's schedule (the backbone's times
    ``backbone_lr_mult``). With ``head_steps`` H > 0 the head follows a warm-up + decay schedule
    over [0, H), the backbone is 0 there; from H both restart their schedule over the remaining
    steps, scaled by ``phase2_lr_mult`` (and the backbone's also by ``backbone_lr_mult``).
    """
    h = plan.head_steps
    bmult = plan.backbone_lr_mult
    if h <= 0:
        head = make_schedule(opt_cfg, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        backbone = make_schedule(
            _scaled(opt_cfg, bmult), steps_per_epoch=steps_per_epoch, total_steps=total_steps
        )
        return {"head": head, "backbone": backbone}
    rest = max(total_steps - h, 1)
    p2 = plan.phase2_lr_mult
    phase1 = make_schedule(opt_cfg, steps_per_epoch=steps_per_epoch, total_steps=h)
    head2 = make_schedule(_scaled(opt_cfg, p2), steps_per_epoch=steps_per_epoch, total_steps=rest)
    back2 = make_schedule(
        _scaled(opt_cfg, p2 * bmult), steps_per_epoch=steps_per_epoch, total_steps=rest
    )
    return {
        "head": optax.join_schedules([phase1, head2], [h]),
        "backbone": optax.join_schedules([optax.constant_schedule(0.0), back2], [h]),
    }


def make_optimizer(
    opt_cfg: Any, *, steps_per_epoch: int, total_steps: int, plan: Any = None, params: Any = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds the optimizer chain from ``config.optimizer``.

    Chain: optional global-norm clipping -> (for sgd/adam/rmsprop) L2 decay added to the gradient
    on masked weights -> the optimizer with the schedule. AdamW uses decoupled decay with the same
    mask. With a fine-tuning ``plan`` (jaxcls.trainer.finetune) and the ``params`` it labels, the groups
    'head' and 'backbone' get their own schedules and 'frozen' parameters never change
    (optax.multi_transform). With the 'plateau' schedule, `plateau_scaling` ends the chain.
    Returns the transformation and the (head's) schedule, which is what is logged as the learning
    rate (times `lr_scale` of the optimizer state).
    """
    parts = []
    clip = float(opt_cfg.clip_norm)
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    plateau = [plateau_scaling(opt_cfg)] if opt_cfg.schedule == "plateau" else []
    if plan is None or plan.is_plain:
        schedule = make_schedule(opt_cfg, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        parts.append(_base_optimizer(opt_cfg, schedule))
        return optax.chain(*parts, *plateau), schedule
    schedules = group_schedules(
        opt_cfg, plan, steps_per_epoch=steps_per_epoch, total_steps=total_steps
    )
    transforms = {
        "head": _base_optimizer(opt_cfg, schedules["head"]),
        "backbone": _base_optimizer(opt_cfg, schedules["backbone"]),
        "frozen": optax.set_to_zero(),
    }
    parts.append(optax.multi_transform(transforms, plan.labels(params)))
    return optax.chain(*parts, *plateau), schedules["head"]
