"""Stages 1-6 of a run: mesh, data, model (with its initial weights and fine-tuning plan),
optimizer, compiled steps, a fresh train state -- and the restore of the latest checkpoint.

`setup_run` returns the `Run` that the loop (`loop`), the evaluation and the reports share.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from input_pipeline import pipeline
from jaxcls import files, models
from jaxcls.models import summary
from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.trainer import compat, feature_cache, finetune, optim, parallel, steps, weights_init

MODEL_KEYS_NOT_KWARGS = ("name", "dtype")


# ----------------------------------------------------------------------------- model stage
@dataclasses.dataclass
class ModelParts:
    graphdef: Any
    params: Any
    rest: Any
    name: str
    kwargs: dict
    plan: finetune.Plan
    phases: list  # (start_step, graphdef, grad_mask) per training phase
    init: dict | None = None  # what the weights were initialised from


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
    """Architecture arguments from ``config.model``: everything but name and dtype that is set
    (None is the model's own default), checked against the chosen model's signature (ValueError
    naming an argument it does not take and listing those it does)."""
    kwargs = {
        k: v for k, v in config.model.items() if k not in MODEL_KEYS_NOT_KWARGS and v is not None
    }
    models.check_model_args(config.model.name, kwargs, prefix="config.model.")
    return kwargs


def create_model(
    config: ml_collections.ConfigDict,
    num_classes: int,
    image_size: tuple[int, int] | None = None,
    *,
    steps_per_epoch: int = 1,
    total_steps: int = 1,
) -> ModelParts:
    """Builds the model, loads its initial weights (config.init), makes the fine-tuning plan
    (config.finetune) and splits the model into graphdef / params / rest."""
    kwargs = model_kwargs(config)
    # Models that flatten before the classifier are built for the image side they will see.
    kwargs = models.fill_input_size(config.model.name, kwargs, image_size)
    model = models.create(
        config.model.name,
        num_classes=num_classes,
        rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1),
        dtype=jnp.dtype(config.model.dtype),
        **kwargs,
    )
    init_record = weights_init.initialise(model, config, num_classes)
    if init_record:
        logging.info("Initial weights: %s", init_record.get("summary", init_record))
    plan = finetune.make_plan(
        model,
        config.finetune,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        image_size=image_size,
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    phases = _phases(model, plan, graphdef, params)
    return ModelParts(graphdef, params, rest, config.model.name, kwargs, plan, phases, init_record)


def _phases(model: nnx.Module, plan: finetune.Plan, graphdef: Any, params: Any) -> list:
    """``(start_step, graphdef, grad_mask)`` per training phase, each logged with what it trains."""
    if plan.is_plain:
        return [(0, graphdef, None)]
    labels = plan.labels(params)
    phases = []
    for phase in plan.phases:
        mask = jax.tree.map(lambda label, p=phase: label in p.trainable, labels)
        phases.append((phase.start_step, finetune.phase_graphdef(model, phase), mask))
        frozen = plan.frozen_parts if "backbone" in phase.trainable else plan.units
        logging.info(
            "Fine-tuning phase %r from step %d: training %s; frozen units: %s; "
            "BatchNorm in inference mode in: %s",
            phase.name,
            phase.start_step,
            "+".join(phase.trainable),
            ", ".join("/".join(map(str, u)) for u in frozen) or "none",
            ", ".join("/".join(map(str, u)) for u in phase.frozen_units) or "none",
        )
    return phases


def log_parameter_overview(params: Any) -> int:
    from clu import parameter_overview

    pure = params.to_pure_dict() if hasattr(params, "to_pure_dict") else params
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(pure))
    if jax.process_index() == 0:
        logging.info(
            "Parameters (%s total):\n%s",
            f"{n:,}",
            parameter_overview.get_parameter_overview(pure, include_stats=False, max_lines=60),
        )
    return n


# ------------------------------------------------------------------------------ the run
@dataclasses.dataclass
class Run:
    """Everything the loop and the final evaluation share."""

    config: ml_collections.ConfigDict
    workdir: str
    mesh: Any
    data: pipeline.Data
    parts: ModelParts
    compiled: steps.CompiledSteps
    steps_per_epoch: int
    total_steps: int
    checkpoints: ckpt_lib.Checkpoints
    train_images_per_sec: float = float("nan")
    train_compile_seconds: float | None = None  # This process's first train step, compile incl.
    compile_cache: dict | None = None  # {'dir', 'hits', 'misses'} of the persistent XLA cache.
    features: feature_cache.Cache | None = None  # finetune.cache_features: the cached rows.
    started: float = dataclasses.field(default_factory=time.time)  # wall-clock start of the run

    def meta(self, history: list, stopped_early: bool = False) -> dict:
        """The JSON saved with every checkpoint: what predict/eval/saliency need to rebuild it."""
        meta = {
            "model": self.parts.name,
            "model_kwargs": self.parts.kwargs,
            **compat.version_fields(),
            "model_dtype": self.config.model.dtype,
            "num_classes": self.data.num_classes,
            "class_names": list(self.data.class_names),
            "image_size": list(self.data.image_size),
            "eval_pipeline": self.data.eval_pipeline,
            "train_pipeline": self.data.train_pipeline,
            "dataset": self.data.source_spec,
            "init": self.parts.init,
            "finetune_phase_starts": [p[0] for p in self.parts.phases],
            "history": history,
            "stopped_early": stopped_early,
            "config": json.loads(self.config.to_json_best_effort()),
        }
        return files.to_json_tree(meta)


def setup_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, steps.TrainState]:
    """Stages 1-5: mesh, data, model, optimizer, fresh train state (replicated on the mesh)."""
    parallel.maybe_initialize_distributed(config.distributed)
    mesh = parallel.make_mesh(config.num_devices)
    parallel.local_batch_size(config.batch_size, mesh)  # Fails early on an uneven batch.
    config = weights_init.resolve_config(config)
    data = pipeline.build_data(config, workdir)
    _log_data(data)
    spe = pipeline.steps_per_epoch(data, config.batch_size)
    total = spe * int(config.num_epochs)
    parts = create_model(
        config, data.num_classes, data.image_size, steps_per_epoch=spe, total_steps=total
    )
    log_parameter_overview(parts.params)
    mesh = _mesh_for_model(config, mesh, parts, data.image_size)
    logging.info(
        "Mesh: %d %s device(s), %d process(es)",
        mesh.devices.size,
        jax.devices()[0].platform,
        jax.process_count(),
    )
    from_features = bool(config.finetune.cache_features)
    if from_features:
        model = nnx.merge(parts.graphdef, parts.params, parts.rest)
        feature_cache.check(config, data, model, parts.plan)
    tx, schedule = optim.make_optimizer(
        config.optimizer, steps_per_epoch=spe, total_steps=total, plan=parts.plan, params=parts.params
    )
    compiled = steps.CompiledSteps(
        mesh=mesh,
        graphdef=parts.graphdef,
        phases=parts.phases,
        tx=tx,
        schedule=schedule,
        num_classes=data.num_classes,
        label_smoothing=float(config.label_smoothing),
        class_weights=data.class_weights if config.data.class_weights else None,
        from_features=from_features,
    )
    state = steps.create_train_state(parts.params, parts.rest, tx, config.seed)
    state = jax.device_put(state, compiled.state_sharding)
    checkpoints = make_checkpoints(config, workdir)
    run = Run(config, workdir, mesh, data, parts, compiled, spe, total, checkpoints)
    return run, state


def _mesh_for_model(config, mesh: Mesh, parts: ModelParts, image_size) -> Mesh:
    """The mesh the run trains on: all devices, or one XLA:CPU device where the model has too
    little compute per parameter, or a step too little compute, for data parallelism over CPU
    cores to pay (`parallel.auto_cpu_mesh_size`)."""

    def train_cost() -> tuple[float, float]:
        model = nnx.merge(parts.graphdef, parts.params, parts.rest)
        return summary.train_cost(model, tuple(image_size))

    n = parallel.auto_cpu_mesh_size(config.num_devices, train_cost, config.batch_size)
    return mesh if n == config.num_devices else parallel.make_mesh(n)


def _log_data(data: pipeline.Data) -> None:
    logging.info(
        "Data %s: %d classes, splits %s",
        data.source_spec,
        data.num_classes,
        {k: len(v) for k, v in data.manifests.items()},
    )
    if data.skipped:
        logging.warning(
            "Skipped %d unreadable file(s) (listed in results.json):\n  %s",
            len(data.skipped),
            "\n  ".join(f"{s['path']}: {s['reason']}" for s in data.skipped[:20]),
        )


def make_checkpoints(config: ml_collections.ConfigDict, workdir: str) -> ckpt_lib.Checkpoints:
    """The run's checkpoint store, keeping the best by the early-stopping metric."""
    return ckpt_lib.Checkpoints(
        ckpt_lib.checkpoints_dir(workdir),
        keep=config.checkpoint.keep,
        keep_best=config.checkpoint.keep_best,
        best_metric=config.early_stopping.metric,
        best_mode=config.early_stopping.mode,
        async_save=config.checkpoint.async_save,
    )


def restore(run: Run, state: steps.TrainState):
    """Stage 6: the latest checkpoint if there is one. Returns (state, data_state, meta | None)."""
    # Another model, classes or checkpoint format: one sentence, before Orbax meets the shapes.
    compat.check_resume(ckpt_lib.checkpoints_dir(run.workdir), run.meta([]))
    abstract = ckpt_lib.abstract_like(state, run.compiled.state_sharding)
    restored = run.checkpoints.restore_latest(abstract)
    if restored is None:
        return state, None, None
    step, state, data_state, meta = restored
    if meta.get("class_names") != list(run.data.class_names):
        raise ValueError(
            f"the checkpoint in {run.workdir} was trained on classes {meta.get('class_names')} "
            f"but the data now has {list(run.data.class_names)}; use a new workdir"
        )
    logging.info("Resuming from step %d (%s)", step, run.checkpoints.latest.directory)
    return state, data_state, meta


def restore_best(run: Run, state: steps.TrainState) -> tuple[int | None, steps.TrainState]:
    """The best checkpoint's step and state (the given state and None when nothing is saved)."""
    abstract = ckpt_lib.abstract_like(state, run.compiled.state_sharding)
    restored = run.checkpoints.restore_best(abstract)
    return (restored[0], restored[1]) if restored else (None, state)
