"""The pure train and eval steps: one jitted function each, state donated, shardings explicit.

The model is used functionally: ``nnx.split`` once (graphdef + parameters + the rest of its state,
i.e. BatchNorm statistics and RNG streams), and inside the jitted step ``nnx.merge(..., copy=True)``
rebuilds it, runs it and hands back the new non-parameter state. The step's randomness (dropout,
drop-path) is ``fold_in(seed key, step)``, so it depends only on the step number: a resumed run draws
the same masks as an uninterrupted one.

A step whose loss or gradients are not finite changes nothing (parameters, optimizer state and
BatchNorm statistics are kept) and is counted in ``bad_steps`` / ``bad_streak``; the trainer aborts
when the streak reaches its limit (optax.apply_if_finite would still let BatchNorm statistics absorb
the NaNs, and would apply updates again after N bad steps).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxcls.models import conv, heads
from jaxcls.trainer import finetune, optim, parallel


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken.
    params: Any  # nnx.State of nnx.Param.
    rest: Any  # nnx.State of everything else (BatchStat, RNG streams).
    opt_state: Any
    rng: jax.Array  # uint32[2] raw PRNG key; step keys are folded in from it.
    bad_steps: jax.Array  # int32: non-finite steps skipped so far.
    bad_streak: jax.Array  # int32: non-finite steps in a row, ending at the current step.


def create_train_state(params: Any, rest: Any, tx: optax.GradientTransformation, seed: int):
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
        bad_steps=jnp.zeros((), jnp.int32),
        bad_streak=jnp.zeros((), jnp.int32),
    )


def classification_loss(
    logits: jax.Array,
    batch: dict[str, jax.Array],
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> jax.Array:
    """Per-example softmax cross-entropy, in float32.

    Uses ``batch['label_onehot']`` (soft targets, e.g. from mixup) when present, else one-hot
    ``batch['label']``. Label smoothing mixes the targets with the uniform distribution. With
    ``class_weights`` each example's loss is scaled by its class's weight (Keras ``class_weight``).
    """
    logits = logits.astype(jnp.float32)
    if "label_onehot" in batch:
        targets = batch["label_onehot"].astype(jnp.float32)
    else:
        targets = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets)
    if class_weights is not None:
        loss = loss * jnp.asarray(class_weights, jnp.float32)[batch["label"]]
    return loss


def finite_step(loss: jax.Array, grads: Any) -> tuple[jax.Array, jax.Array]:
    """``(finite, global gradient norm)``: whether a step may be applied.

    One reduction over the gradients gives both: a NaN or an inf anywhere makes the sum of
    squares NaN or inf (so does a norm beyond float32's range, about 1.8e19, with every element
    finite: a step that would wreck the weights anyway). A separate ``isfinite`` reduction per
    parameter made XLA:CPU compile EfficientNet-B0's train step in 61 s instead of 17 s
    (docs/performance.md)."""
    grad_norm = optax.global_norm(grads)
    return jnp.isfinite(loss) & jnp.isfinite(grad_norm), grad_norm


def keep_if(finite: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``finite`` is True, else ``old``, leaf by leaf (two pytrees of one structure)."""
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


SKIP_IMPLS = ("auto", "cond", "select")
SKIP_SWITCH = conv.ImplSwitch("non-finite step skip", SKIP_IMPLS)


def set_skip_impl(impl: str | None) -> conv.override_impl:
    """Overrides how `apply_if_finite` skips a step for ``impl='auto'`` (globally, or as a
    context manager for the steps traced inside it)."""
    return conv.override_impl(SKIP_SWITCH, impl)


def apply_if_finite(
    finite: jax.Array,
    tx: optax.GradientTransformation,
    grads: Any,
    params: Any,
    opt_state: Any,
    impl: str = "auto",
) -> tuple[Any, Any]:
    """``(new parameters, new optimizer state)`` after ``tx``'s update, or the old ones unchanged
    where ``finite`` is False.

    'select' computes the update and picks per leaf with ``jnp.where``. XLA then fuses each
    update (say ``g + 0.9 * mu``) into two consumers, the new state's select and the new
    parameters' select, which both read the old state while the first overwrites it in place (it
    is donated): XLA:CPU copies every optimizer-state buffer on every step to make that safe
    (ResNet-18: 62 copies, 13% of the step's thunk time at 48 px). 'cond' runs the update inside
    ``lax.cond``, so each buffer is read and written by one fusion and nothing is copied. XLA:GPU's
    conditional reads its predicate back to the host (its ConditionalThunk), which would put a
    sync into every step, so 'auto' is 'cond' on CPU and 'select' elsewhere
    (docs/performance.md)."""
    default = lambda: "cond" if jax.default_backend() == "cpu" else "select"  # noqa: E731

    def update(params, opt_state):
        updates, new_opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_opt_state

    if SKIP_SWITCH.resolve(impl, default) == "cond":
        return jax.lax.cond(finite, update, lambda p, o: (p, o), params, opt_state)
    return keep_if(finite, update(params, opt_state), (params, opt_state))


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    graphdef: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_classes: int,
    label_smoothing: float,
    class_weights: jax.Array | None,
    grad_mask: Any = None,
    from_features: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a global batch. Pure: returns the new state and metric arrays.

    ``grad_mask`` (a pytree of Python bools like the parameters, or None) marks the parameters that
    train in this phase; the others get a zero gradient, so XLA drops the backward pass through
    frozen parts. ``from_features``: the batch holds cached ``'features'``
    (`heads.pooled_features`) instead of images, and only the head runs.
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
        model = nnx.merge(graphdef, params, state.rest, copy=True)
        nnx.reseed(model, dropout=key)
        logits = _logits(model, batch, from_features, train=True)
        loss = classification_loss(
            logits,
            batch,
            num_classes=num_classes,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
        ).mean()
        return loss, (logits, nnx.state(model, nnx.Not(nnx.Param)))

    (loss, (logits, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if grad_mask is not None:
        grads = jax.tree.map(lambda g, m: g if m else jnp.zeros_like(g), grads, grad_mask)
    finite, grad_norm = finite_step(loss, grads)
    new_params, new_opt_state = apply_if_finite(finite, tx, grads, state.params, state.opt_state)
    new_state = state.replace(
        step=state.step + 1,
        params=new_params,
        rest=keep_if(finite, new_rest, state.rest),
        opt_state=new_opt_state,
        bad_steps=state.bad_steps + (~finite).astype(jnp.int32),
        bad_streak=jnp.where(finite, 0, state.bad_streak + 1),
    )
    metrics = {
        "loss": jnp.where(finite, loss, 0.0),
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32),
        "grad_norm": jnp.where(finite, grad_norm, 0.0),
        "learning_rate": schedule(state.step) * optim.lr_scale(state.opt_state),
        "finite_steps": finite.astype(jnp.float32),
    }
    return new_state, metrics


def _logits(model: nnx.Module, batch: dict, from_features: bool, *, train: bool) -> jax.Array:
    if from_features:
        return heads.classify(model, batch["features"], train=train)
    return model(batch["image"], train=train)[0]


def eval_step(
    params: Any,
    rest: Any,
    batch: dict[str, jax.Array],
    *,
    graphdef: Any,
    num_classes: int,
    from_features: bool = False,
) -> dict[str, jax.Array]:
    """Logits and per-example loss of a (possibly padded) batch, in inference mode."""
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits = _logits(model, batch, from_features, train=False).astype(jnp.float32)
    loss = classification_loss(logits, {"label": batch["label"]}, num_classes=num_classes)
    return {"logits": logits, "loss": loss, "label": batch["label"], "mask": batch["mask"]}


def features_step(params: Any, rest: Any, batch: dict, *, graphdef: Any) -> dict[str, jax.Array]:
    """`heads.pooled_features` of a (possibly padded) batch of images, with its mask."""
    model = nnx.merge(graphdef, params, rest, copy=True)
    return {"features": heads.pooled_features(model, batch["image"]), "mask": batch["mask"]}


class CompiledSteps:
    """The jitted train/eval steps of one run, with trace counters (each compiles once).

    ``phases`` lists ``(start_step, graphdef, grad_mask)``: a fine-tuning run has one train step
    per phase (e.g. head only, then the whole network), each compiled once; a plain run has one.
    With ``from_features`` the train steps take cached features (`train_step`); ``eval`` still
    takes images, ``eval_features`` features, and ``features`` computes them.
    """

    def __init__(
        self,
        *,
        mesh: Mesh,
        graphdef: Any,
        tx: optax.GradientTransformation,
        schedule: optax.Schedule,
        num_classes: int,
        label_smoothing: float = 0.0,
        class_weights: Any = None,
        phases: list[tuple[int, Any, Any]] | None = None,
        from_features: bool = False,
    ):
        self.traces = {"train": 0, "eval": 0}
        if from_features:
            self.traces.update(features=0, eval_features=0)
        repl = parallel.replicated(mesh)
        data = parallel.batch_sharding(mesh)
        cw = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)
        options = conv.compiler_options(mesh.devices.flat[0].platform)

        def make_train(phase_graphdef, grad_mask):
            def counted_train(state, batch):
                self.traces["train"] += 1  # Runs at trace time only.
                return train_step(
                    state,
                    batch,
                    graphdef=phase_graphdef,
                    tx=tx,
                    schedule=schedule,
                    num_classes=num_classes,
                    label_smoothing=label_smoothing,
                    class_weights=cw,
                    grad_mask=grad_mask,
                    from_features=from_features,
                )

            return jax.jit(
                counted_train,
                in_shardings=(repl, data),
                out_shardings=(repl, repl),
                donate_argnums=0,
                compiler_options=options,
            )

        def make_eval(name, fn, **kwargs):
            def counted(params, rest, batch):
                self.traces[name] += 1
                return fn(params, rest, batch, graphdef=graphdef, **kwargs)

            return jax.jit(
                counted,
                in_shardings=(repl, repl, data),
                out_shardings=repl,
                compiler_options=options,
            )

        phases = phases or [(0, graphdef, None)]
        self.phase_starts = [start for start, _, _ in phases]
        self.train_phases = [make_train(gd, mask) for _, gd, mask in phases]
        self.train = self.train_phases[0]
        self.eval = make_eval("eval", eval_step, num_classes=num_classes)
        if from_features:
            self.features = make_eval("features", features_step)
            self.eval_features = make_eval(
                "eval_features", eval_step, num_classes=num_classes, from_features=True
            )
        self.state_sharding = repl

    def train_fn(self, step: int):
        """The train step to use for the step taken from state.step == ``step``."""
        return self.train_phases[finetune.phase_index(self.phase_starts, step)]
