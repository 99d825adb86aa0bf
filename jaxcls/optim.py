"""The optax factory: optimizers, learning-rate schedules, weight-decay masks and clipping.

Everything is built from the ``config.optimizer`` block, with epochs converted to steps here (at
run time), so a command-line override of ``num_epochs`` or ``batch_size`` never leaves a stale
schedule behind.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "constant", "step")


def make_schedule(opt_cfg: Any, *, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Learning rate per step: linear warm-up, then cosine decay, constant, or step decay.

    Args:
      opt_cfg: ``config.optimizer`` (learning_rate, schedule, warmup_epochs, min_lr_ratio,
        step_epochs, step_factor).
      steps_per_epoch: optimizer steps in one epoch.
      total_steps: optimizer steps in the whole run.
    """
    base = float(opt_cfg.learning_rate)
    warmup = int(round(float(opt_cfg.get("warmup_epochs", 0.0)) * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    name = opt_cfg.get("schedule", "cosine")
    if name == "cosine":
        after = optax.cosine_decay_schedule(
            base, max(total_steps - warmup, 1), alpha=float(opt_cfg.get("min_lr_ratio", 0.0))
        )
    elif name == "constant":
        after = optax.constant_schedule(base)
    elif name == "step":
        boundaries = {
            int(round(float(e) * steps_per_epoch)) - warmup: float(opt_cfg.get("step_factor", 0.1))
            for e in opt_cfg.get("step_epochs", ())
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


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: kernels (ndim >= 2); not biases or norm scales.

    BatchNorm/LayerNorm scales and all biases are 1-D, so the rank alone separates them; this is the
    rule timm and big_vision use.
    """
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    opt_cfg: Any, *, steps_per_epoch: int, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds the optimizer chain from ``config.optimizer``.

    Chain: optional global-norm clipping -> (for sgd/adam/rmsprop) L2 decay added to the gradient
    on masked weights -> the optimizer with the schedule. AdamW uses decoupled decay with the same
    mask. Returns the transformation and the schedule (logged as the learning rate).
    """
    schedule = make_schedule(opt_cfg, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    name = opt_cfg.get("name", "adamw")
    wd = float(opt_cfg.get("weight_decay", 0.0))
    parts = []
    clip = float(opt_cfg.get("clip_norm", 0.0))
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    if name == "adamw":
        opt = optax.adamw(
            schedule,
            b1=opt_cfg.get("b1", 0.9),
            b2=opt_cfg.get("b2", 0.999),
            eps=opt_cfg.get("eps", 1e-8),
            weight_decay=wd,
            mask=decay_mask,
        )
    else:
        if wd > 0:
            parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
        if name == "sgd":
            momentum = float(opt_cfg.get("momentum", 0.9))
            opt = optax.sgd(
                schedule, momentum=momentum or None, nesterov=bool(opt_cfg.get("nesterov", False))
            )
        elif name == "adam":
            opt = optax.adam(
                schedule,
                b1=opt_cfg.get("b1", 0.9),
                b2=opt_cfg.get("b2", 0.999),
                eps=opt_cfg.get("eps", 1e-8),
            )
        elif name == "rmsprop":
            opt = optax.rmsprop(
                schedule,
                decay=opt_cfg.get("rmsprop_decay", 0.9),
                eps=opt_cfg.get("eps", 1e-8),
                momentum=float(opt_cfg.get("momentum", 0.0)) or None,
            )
        else:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    parts.append(opt)
    return optax.chain(*parts), schedule
