"""The trainer: one function per stage, run top to bottom by ``run``.

mesh -> data -> model -> optimizer -> state (restored if the workdir has a checkpoint) -> loop
(train steps, periodic logging, per-epoch validation, checkpoints, early stopping) -> final
evaluation of the best checkpoint on every split -> ``results.json``.

A rerun with the same workdir resumes from the latest checkpoint: parameters, optimizer state, step,
RNG and the input iterator's position all come back, so the run ends exactly as an uninterrupted one.
SIGTERM (preemption) saves a checkpoint and exits with ``PREEMPTED_EXIT_CODE``.
"""

from __future__ import annotations

import dataclasses
import json
import logging as pylogging
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from input_pipeline import pipeline
from jaxcls import checkpoint as ckpt_lib
from jaxcls import evaluate, finetune, models, optim, parallel, report, steps
from jaxcls import init as init_lib

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped on request, checkpoint saved, rerun to resume".
MODEL_KEYS_NOT_KWARGS = ("name", "dtype")


class TrainingAborted(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite)."""


class Preempted(SystemExit):
    """Raised after SIGTERM once a checkpoint is safely written."""

    def __init__(self, step: int):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


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
    """Architecture arguments from ``config.model`` (everything but name and dtype)."""
    return {k: v for k, v in config.model.items() if k not in MODEL_KEYS_NOT_KWARGS}


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
    dtype = jnp.dtype(config.model.get("dtype", "float32"))
    kwargs = model_kwargs(config)
    info = models.model_info(config.model.name)
    if "input_size" in info.defaults and "input_size" not in kwargs and image_size is not None:
        # Models that flatten before the classifier are built for the image side they will see.
        kwargs["input_size"] = int(image_size[0])
    model = models.create(
        config.model.name,
        num_classes=num_classes,
        rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1),
        dtype=dtype,
        **kwargs,
    )
    init_record = init_lib.initialise(model, config, num_classes)
    if init_record:
        logging.info("Initial weights: %s", init_record.get("summary", init_record))
    plan = finetune.make_plan(
        model,
        config.get("finetune", None),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if plan.is_plain:
        phases = [(0, graphdef, None)]
    else:
        labels = plan.labels(params)
        phases = []
        for phase in plan.phases:
            mask = jax.tree.map(lambda label, p=phase: label in p.trainable, labels)
            phases.append((phase.start_step, finetune.phase_graphdef(model, phase), mask))
            frozen = [
                u
                for u in plan.units
                if u not in plan.trainable_units or "backbone" not in phase.trainable
            ]
            logging.info(
                "Fine-tuning phase %r from step %d: training %s; frozen units: %s; "
                "BatchNorm in inference mode in: %s",
                phase.name,
                phase.start_step,
                "+".join(phase.trainable),
                ", ".join("/".join(map(str, u)) for u in frozen) or "none",
                ", ".join("/".join(map(str, u)) for u in phase.frozen_units) or "none",
            )
    return ModelParts(graphdef, params, rest, config.model.name, kwargs, plan, phases, init_record)


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


# ------------------------------------------------------------------------------ logging
class _QuietLibraries(pylogging.Filter):
    """Drops INFO/DEBUG records from chatty libraries (Orbax logs every file it writes)."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}grain{os.sep}", f"{os.sep}jax{os.sep}_src{os.sep}")

    def filter(self, record: pylogging.LogRecord) -> bool:
        if record.levelno >= pylogging.WARNING:
            return True
        return not any(n in record.pathname for n in self.NOISY)


def quiet_library_logs() -> None:
    """Keeps the console readable: our progress lines, library warnings and errors only."""
    logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _QuietLibraries) for f in logger.filters):
        logger.addFilter(_QuietLibraries())


def make_writer(workdir: str):
    from clu import metric_writers  # Imports TensorFlow (TensorBoard event files).

    return metric_writers.create_default_writer(
        os.path.join(workdir, "tensorboard"), just_logging=jax.process_index() > 0
    )


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Console progress: step, epoch, metrics, images/sec and ETA, printed at each log step.

    Also accumulates pure training time (between syncs, excluding the first step's compilation and
    everything done outside ``train_window``), from which the run's images/sec is reported.
    """

    def __init__(self, *, start_step: int, total_steps: int, steps_per_epoch: int, batch: int):
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.batch = batch
        self.train_seconds = 0.0
        self.timed_steps = 0
        self._mark_time: float | None = None
        self._mark_step = start_step

    def mark(self, step: int) -> None:
        """Starts a timed window at a synchronised point (after the device finished ``step``)."""
        self._mark_time = time.perf_counter()
        self._mark_step = step

    def close_window(self, step: int) -> float:
        """Ends the timed window at a synchronised point; returns its images/sec."""
        if self._mark_time is None:
            return float("nan")
        dt = time.perf_counter() - self._mark_time
        n = step - self._mark_step
        self._mark_time = None
        if n <= 0 or dt <= 0:
            return float("nan")
        self.train_seconds += dt
        self.timed_steps += n
        return n * self.batch / dt

    @property
    def images_per_sec(self) -> float:
        if self.timed_steps == 0 or self.train_seconds <= 0:
            return float("nan")
        return self.timed_steps * self.batch / self.train_seconds

    def line(self, step: int, metrics: dict[str, float], rate: float) -> str:
        epoch = (step - 1) // self.steps_per_epoch + 1
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        ips = self.images_per_sec if math.isnan(rate) else rate
        eta = (self.total_steps - step) * self.batch / ips if ips and ips > 0 else float("nan")
        shown = " ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if k in ("loss", "accuracy", "learning_rate")
        )
        return (
            f"step {step}/{self.total_steps} (epoch {epoch}/{epochs}) {shown} | "
            f"{ips:.1f} img/s | ETA {format_eta(eta)}"
        )


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
    started: float = dataclasses.field(default_factory=time.time)  # wall-clock start of the run

    def meta(self, history: list, stopped_early: bool = False) -> dict:
        """The JSON saved with every checkpoint: what predict/eval/saliency need to rebuild it."""
        meta = {
            "model": self.parts.name,
            "model_kwargs": self.parts.kwargs,
            "model_dtype": self.config.model.get("dtype", "float32"),
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
        return json.loads(json.dumps(meta, default=_json_default))


def setup_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, steps.TrainState]:
    """Stages 1-5: mesh, data, model, optimizer, fresh train state (replicated on the mesh)."""
    parallel.maybe_initialize_distributed(config.get("distributed", "auto"))
    mesh = parallel.make_mesh(config.get("num_devices", 0))
    logging.info(
        "Mesh: %d %s device(s), %d process(es)",
        mesh.devices.size,
        jax.devices()[0].platform,
        jax.process_count(),
    )
    parallel.local_batch_size(config.batch_size, mesh)  # Fails early on an uneven batch.
    config = init_lib.resolve_config(config)
    data = pipeline.build_data(config, workdir)
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
    spe = pipeline.steps_per_epoch(data, config.batch_size)
    total = spe * int(config.num_epochs)
    parts = create_model(
        config, data.num_classes, data.image_size, steps_per_epoch=spe, total_steps=total
    )
    log_parameter_overview(parts.params)
    tx, schedule = optim.make_optimizer(
        config.optimizer,
        steps_per_epoch=spe,
        total_steps=total,
        plan=parts.plan,
        params=parts.params,
    )
    class_weights = getattr(data, "class_weights", None)
    compiled = steps.CompiledSteps(
        mesh=mesh,
        graphdef=parts.graphdef,
        phases=parts.phases,
        tx=tx,
        schedule=schedule,
        num_classes=data.num_classes,
        label_smoothing=float(config.get("label_smoothing", 0.0)),
        class_weights=class_weights if config.data.get("class_weights", False) else None,
    )
    state = steps.create_train_state(parts.params, parts.rest, tx, config.seed)
    state = jax.device_put(state, compiled.state_sharding)
    ck = config.checkpoint
    stop = config.early_stopping
    checkpoints = ckpt_lib.Checkpoints(
        os.path.join(workdir, "checkpoints"),
        keep=ck.get("keep", 3),
        keep_best=ck.get("keep_best", 1),
        best_metric=stop.get("metric", "val/accuracy"),
        best_mode=stop.get("mode", "max"),
        async_save=ck.get("async_save", True),
    )
    run = Run(config, workdir, mesh, data, parts, compiled, spe, total, checkpoints)
    return run, state


def restore(run: Run, state: steps.TrainState):
    """Stage 6: the latest checkpoint if there is one. Returns (state, data_state, meta | None)."""
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


def evaluate_split(run: Run, params: Any, rest: Any, split: str) -> dict[str, Any]:
    """Runs the eval step over a whole split; returns metrics plus the per-example outputs."""
    bs = run.config.get("eval_batch_size", 0) or run.config.batch_size
    per_process = parallel.local_batch_size(bs, run.mesh)
    logits, labels, losses = [], [], []
    for batch in pipeline.eval_batches(
        run.data,
        split,
        run.config,
        batch_size=per_process,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    ):
        out = jax.device_get(run.compiled.eval(params, rest, parallel.shard_batch(batch, run.mesh)))
        keep = out["mask"] > 0
        logits.append(out["logits"][keep])
        labels.append(out["label"][keep])
        losses.append(out["loss"][keep])
    logits = np.concatenate(logits)
    labels = np.concatenate(labels)
    losses = np.concatenate(losses)
    metrics = evaluate.basic_metrics(logits, labels, losses, num_classes=run.data.num_classes)
    return {"metrics": metrics, "logits": logits, "labels": labels, "losses": losses}


def _install_sigterm_handler() -> dict:
    """Makes SIGTERM set a flag the loop checks after each step (save, then exit)."""
    flag = {"term": False, "previous": None}

    def handler(signum, frame):
        del frame
        logging.warning("Received signal %d: will save a checkpoint and stop.", signum)
        flag["term"] = True

    try:
        flag["previous"] = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # Not the main thread (e.g. inside some test runners): no handler.
        pass
    return flag


def _restore_sigterm_handler(flag: dict) -> None:
    if flag.get("previous") is not None:
        try:
            signal.signal(signal.SIGTERM, flag["previous"])
        except ValueError:
            pass


def train_loop(run: Run, state: steps.TrainState, data_state: Any, meta: dict | None):
    """Stage 7: steps, logging, per-epoch validation, checkpoints, early stopping."""
    config = run.config
    history = list(meta.get("history", [])) if meta else []
    stopped_early = bool(meta.get("stopped_early", False)) if meta else False
    start_step = int(jax.device_get(state.step))
    if start_step >= run.total_steps or stopped_early:
        logging.info("Training already finished at step %d.", start_step)
        return state, history, stopped_early

    per_process = parallel.local_batch_size(config.batch_size, run.mesh)
    train_ds = pipeline.train_dataset(
        run.data,
        config,
        batch_size=per_process,
        seed=config.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    train_iter = iter(train_ds)
    if data_state is not None:
        train_iter.set_state(data_state)
    batches = parallel.DevicePrefetcher(train_iter, run.mesh, size=2)
    writer = make_writer(run.workdir)
    if start_step == 0:
        writer.write_hparams(
            {k: v for k, v in _flat(config.to_dict()).items() if isinstance(v, (int, float, str))}
        )
    progress = Progress(
        start_step=start_step,
        total_steps=run.total_steps,
        steps_per_epoch=run.steps_per_epoch,
        batch=config.batch_size,
    )
    sigterm = _install_sigterm_handler()
    log_every = max(1, int(config.get("log_every_steps", 20)))
    every_steps = int(config.checkpoint.get("every_steps", 0))
    eval_every = max(1, int(config.get("eval_every_epochs", 1)))
    patience = int(config.early_stopping.get("patience", 0))
    max_streak = int(config.get("max_bad_steps_in_a_row", 5))
    acc = None  # Running sums of step metrics, kept on device until logged.
    acc_steps = 0
    last_data_state = data_state
    reported_bad = 0
    phase_starts = set(run.compiled.phase_starts[1:])
    step = start_step
    logging.info(
        "Training steps %d -> %d (%d per epoch)", start_step, run.total_steps, run.steps_per_epoch
    )
    try:
        while step < run.total_steps:
            batch, last_data_state = next(batches)
            state, metrics = run.compiled.train_fn(step)(state, batch)
            step += 1
            acc = metrics if acc is None else jax.tree.map(jnp.add, acc, metrics)
            acc_steps += 1
            if step == start_step + 1 or step - 1 in phase_starts:
                jax.block_until_ready(state)  # (Re)compilation done: time from here on.
                progress.mark(step)
            epoch_end = step % run.steps_per_epoch == 0
            if step % log_every == 0 or epoch_end or step == run.total_steps:
                # The only host sync in the loop: metrics and bad-step counters in one transfer.
                host, bad_streak, bad_total = jax.device_get(
                    (acc, state.bad_streak, state.bad_steps)
                )
                bad_streak, bad_total = int(bad_streak), int(bad_total)
                rate = progress.close_window(step)
                finite = max(float(host.pop("finite_steps")), 1.0)
                scalars = {
                    k: float(v) / (finite if k in ("loss", "grad_norm") else acc_steps)
                    for k, v in host.items()
                }
                scalars["bad_steps_total"] = bad_total
                if not math.isnan(rate):
                    scalars["images_per_sec"] = rate
                writer.write_scalars(step, {f"train/{k}": v for k, v in scalars.items()})
                logging.info("%s", progress.line(step, scalars, rate))
                if bad_streak >= max_streak:
                    raise TrainingAborted(
                        f"loss or gradients were non-finite for {bad_streak} steps in a row "
                        f"(steps {step - bad_streak + 1}..{step}); {bad_total} bad steps in total. "
                        "Lower the learning rate, enable optimizer.clip_norm, or check the data."
                    )
                if bad_total > reported_bad:
                    logging.warning("%d non-finite step(s) skipped so far", bad_total)
                    reported_bad = bad_total
                acc, acc_steps = None, 0
                progress.mark(step)
            saved = False
            if epoch_end:
                epoch = step // run.steps_per_epoch
                if epoch % eval_every == 0 or step == run.total_steps:
                    val = evaluate_split(run, state.params, state.rest, "val")["metrics"]
                    row = {"epoch": epoch, "step": step, **{f"val/{k}": v for k, v in val.items()}}
                    row.update({f"train/{k}": v for k, v in scalars.items()})
                    history.append(row)
                    writer.write_scalars(step, {f"val/{k}": v for k, v in val.items()})
                    logging.info(
                        "epoch %d: %s",
                        epoch,
                        " ".join(f"val/{k} {v:.4f}" for k, v in val.items()),
                    )
                    metrics_for_best = {f"val/{k}": v for k, v in val.items()}
                    meta = run.meta(history)
                    if run.checkpoints.save_best(
                        step, state, last_data_state, meta, metrics_for_best
                    ):
                        logging.info("new best %s at step %d", run.checkpoints.best_metric, step)
                    best = run.checkpoints.best_step()
                    if patience and best is not None:
                        since = (step - best) // run.steps_per_epoch
                        if since >= patience:
                            logging.info(
                                "Early stopping: no improvement of %s for %d epoch(s)",
                                run.checkpoints.best_metric,
                                since,
                            )
                            stopped_early = True
                run.checkpoints.save(step, state, last_data_state, run.meta(history, stopped_early))
                saved = True
                progress.mark(step)
            elif every_steps and step % every_steps == 0:
                run.checkpoints.save(step, state, last_data_state, run.meta(history))
                saved = True
                progress.mark(step)
            if sigterm["term"]:
                if not saved:
                    run.checkpoints.save(step, state, last_data_state, run.meta(history))
                run.checkpoints.wait()
                logging.warning("Checkpoint at step %d written; exiting for preemption.", step)
                raise Preempted(step)
            if stopped_early:
                break
        if step == run.total_steps or stopped_early:
            run.checkpoints.save(step, state, last_data_state, run.meta(history, stopped_early))
    finally:
        _restore_sigterm_handler(sigterm)
        batches.close()
        if hasattr(train_iter, "close"):
            train_iter.close()  # Stops grain's worker processes.
        run.checkpoints.wait()
        writer.flush()
    run.train_images_per_sec = progress.images_per_sec
    return state, history, stopped_early


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def final_evaluation(
    run: Run,
    state: steps.TrainState,
    history: list,
    stopped_early: bool,
    filename: str = "results.json",
) -> dict:
    """Stage 8: the best checkpoint on train/val/test -> results.json (plus reports)."""
    abstract = ckpt_lib.abstract_like(state, run.compiled.state_sharding)
    restored = run.checkpoints.restore_best(abstract)
    best_step, best_state = (restored[0], restored[1]) if restored else (None, state)
    splits = {}
    outputs = {}
    for split in ("train", "val", "test"):
        if not len(run.data.manifests.get(split, ())):
            continue
        out = evaluate_split(run, best_state.params, best_state.rest, split)
        splits[split] = out["metrics"]
        outputs[split] = out
        logging.info(
            "%s (best step %s): %s",
            split,
            best_step,
            " ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items()),
        )
    results = {
        "model": run.parts.name,
        "dataset": run.data.source_spec,
        "num_classes": run.data.num_classes,
        "class_names": list(run.data.class_names),
        "num_devices": int(run.mesh.devices.size),
        "num_processes": jax.process_count(),
        "platform": jax.devices()[0].platform,
        "global_batch_size": int(run.config.batch_size),
        "steps_per_epoch": run.steps_per_epoch,
        "steps_run": int(jax.device_get(state.step)),
        "epochs_run": int(jax.device_get(state.step)) // run.steps_per_epoch,
        "stopped_early": stopped_early,
        "best_step": best_step,
        "best_metric": run.checkpoints.best_metric,
        "init": run.parts.init,
        "finetune_phase_starts": [p[0] for p in run.parts.phases],
        "train_images_per_sec": _finite_or_none(run.train_images_per_sec),
        "bad_steps": int(jax.device_get(state.bad_steps)),
        "skipped_files": list(getattr(run.data, "skipped", [])),
        "compilations": dict(run.compiled.traces),
        "splits": splits,
        "history": history,
    }
    results["wall_seconds"] = round(time.time() - run.started, 1)
    report.write_all(run, outputs, results, history)  # Full metrics, plots, runs table.
    write_json(os.path.join(run.workdir, filename), results)
    return results


def write_json(path: str, obj: dict) -> None:
    """Writes JSON atomically (temp file + rename) from process 0 only."""
    if jax.process_index() != 0:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _finite_or_none(x: float):
    return float(x) if x is not None and math.isfinite(x) else None


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) and evaluates; returns the results dict also written to results.json."""
    os.makedirs(workdir, exist_ok=True)
    quiet_library_logs()
    t0 = time.time()
    the_run, state = setup_run(config, workdir)
    the_run.started = t0
    state, data_state, meta = restore(the_run, state)
    state, history, stopped_early = train_loop(the_run, state, data_state, meta)
    results = final_evaluation(the_run, state, history, stopped_early)
    the_run.checkpoints.close()
    return results


def run_eval(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """``--mode=eval``: evaluates the workdir's best checkpoint on every split.

    Writes ``results_eval.json`` so the training run's ``results.json`` is never overwritten.
    """
    quiet_library_logs()
    the_run, state = setup_run(config, workdir)
    state, _, meta = restore(the_run, state)
    if meta is None:
        raise ValueError(f"no checkpoint in {workdir}/checkpoints to evaluate")
    if report.cross_dataset_enabled(config):  # --config.eval.dataset: another dataset.
        results = report.cross_dataset(the_run, state, config.eval)
        the_run.checkpoints.close()
        return results
    results = final_evaluation(
        the_run,
        state,
        list(meta.get("history", [])),
        bool(meta.get("stopped_early")),
        filename="results_eval.json",
    )
    the_run.checkpoints.close()
    return results
