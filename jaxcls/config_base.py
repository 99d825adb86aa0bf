"""Defaults shared by every recipe in configs/. A recipe starts from ``base_config()`` and changes
what it needs; the trainer derives steps from epochs at run time, so no value here depends on
another (a ``--config.x=y`` override never leaves a stale derived value behind).

This is the only place the defaults live: the code reads ``config.data.num_threads`` and the like
directly, never ``config.get(field, default)``. ``base_config`` assembles one small builder per
section (``_data()``, ``_optimizer()``, ...).
"""

from __future__ import annotations

import ml_collections


def _section(**fields) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(fields)


def _data() -> ml_collections.ConfigDict:
    fields = dict(
        image_size=32,
        # Train / val / test fractions, stratified by class; or 'source': the dataset's own splits
        # (tfds splits; a folder's train/, valid/ or val/, test/), val carved by val_fraction.
        split=(0.7, 0.15, 0.15),
        split_seed=0,  # Seeds the split and every subsample below.
        val_fraction=0.1,  # split='source' without a validation split: this much of train.
        train_fraction=1.0,  # Keep this fraction of each train class (stratified subsample).
        max_per_class=0,  # Cap every split at this many examples per class; 0 = all.
        train_pipeline="",  # '' = the default for image_size (input_pipeline.pipeline).
        eval_pipeline="",
        num_workers=0,  # grain worker processes; 0 = decode in the main process.
        # Reader threads per process, each making whole batches, and batches buffered ahead: on
        # 2 cores 4 and 4 read ~1.1x faster than 2 and 2 (docs/performance.md, input pipeline).
        num_threads=4,
        prefetch=4,
        scan=True,  # Decode every file once when the splits are made, to find bad ones.
        max_bad_fraction=0.01,  # Abort if more than this fraction of files cannot be read.
        class_map="",  # e.g. 'animals10' (Italian folder names -> English).
        rebalance="none",  # Train split only: 'none' | 'down' | 'up' | 'mean'.
        class_weights=False,  # Weight the loss by inverse class frequency instead.
        mixup=0.0,  # Beta(alpha, alpha) batch mixup; 0 = off.
        cutmix=0.0,  # Beta(alpha, alpha) batch cutmix; 0 = off.
        mix_prob=1.0,  # Fraction of batches mixed when mixup/cutmix is on.
        mix_switch_prob=0.5,  # With both on: chance of cutmix instead of mixup.
        tfds_data_dir="",  # Where prepared tfds datasets live ('' = tfds default).
        tfds_image_key="image",
        tfds_label_key="label",
    )
    # Not type-safe, so split may be a tuple of fractions or the string 'source'.
    return ml_collections.ConfigDict(fields, type_safe=False)


# Every architecture argument of every registered model (``jaxcls.models.all_model_args()``; a
# test keeps this list in sync), each a placeholder: None = the model's own default. Only the ones
# set reach the model, checked against the chosen model's signature (trainer/setup.py), so
# ``--config.model.<arg>=...`` parses for any model's argument and a misspelt one is an error.
# The head of every family (docs/models.md): head=(256,) hidden widths (default ()),
# head_dropout (0.0), head_pool 'avg' | 'max' | 'flatten' ('avg').
MODEL_ARGS = (
    "act", "arch", "aux_logits", "batch_norm", "block", "block_config", "bn_after_act", "bn_eps",
    "bn_momentum", "bn_scale", "bn_size", "cfg", "channel_multiplier", "channels", "conv_bias",
    "convs_per_block", "count_include_pad", "dense", "depth_multiplier", "depths",
    "drop_path_rate", "drop_rate", "dropout", "dw_impl", "filters", "fix_first_last", "fix_stem",
    "global_pool", "growth_rate", "head", "head_dropout", "head_pool", "head_rule", "in_chans",
    "input_size", "kernel_size", "layout", "mlp_hidden", "num_features", "padding", "pool",
    "proj_drop_rate", "round_limit", "stem", "stem_size", "stem_width", "widths",
    "zero_init_last",
)  # fmt: skip


def _model() -> ml_collections.ConfigDict:
    return _section(
        name="cnn",
        dtype="float32",  # Compute dtype: 'float32' or 'bfloat16' (parameters stay float32).
        **{arg: ml_collections.config_dict.placeholder(object) for arg in MODEL_ARGS},
    )


def _optimizer() -> ml_collections.ConfigDict:
    return _section(
        name="adamw",  # 'sgd' | 'adam' | 'adamw' | 'rmsprop'
        learning_rate=1e-3,
        schedule="cosine",  # 'cosine' | 'constant' | 'step' | 'plateau'
        warmup_epochs=1.0,
        min_lr_ratio=0.0,  # Cosine decays to learning_rate * min_lr_ratio.
        step_epochs=(),  # 'step' schedule: epochs at which lr *= step_factor.
        step_factor=0.1,
        # 'plateau' (Keras ReduceLROnPlateau): after warm-up, lr *= plateau_factor when val/loss
        # has not improved for plateau_patience validations, down to plateau_min_lr.
        plateau_factor=0.1,
        plateau_patience=2,
        plateau_min_lr=0.0,
        momentum=0.9,  # sgd / rmsprop.
        nesterov=True,  # sgd.
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        rmsprop_decay=0.9,
        weight_decay=1e-4,  # Not applied to biases and normalisation parameters.
        clip_norm=0.0,  # Global-norm gradient clipping; 0 = off.
    )


def _init() -> ml_collections.ConfigDict:
    # Initial weights (jaxcls/trainer/weights_init.py): a pretrained tag, a local file, or a
    # jaxcls checkpoint.
    return _section(pretrained="", path="", source="", checkpoint="")


def _finetune() -> ml_collections.ConfigDict:
    # Fine-tuning (jaxcls/trainer/finetune.py): head_epochs > 0 trains only the head first
    # (backbone frozen, BatchNorm in inference mode), then the backbone units allowed by train_top
    # (-1 all, 0 none, N the top N) at learning rates scaled by phase2_lr_mult.
    return _section(
        head_epochs=0.0,
        train_top=-1,
        # Or the top N layers with weights, as Keras' `base_model.layers[-N:]` (0 = off; not
        # with train_top). docs/finetuning.md maps Keras' layer counts to ours.
        train_top_layers=0,
        backbone_lr_mult=1.0,
        phase2_lr_mult=1.0,
        freeze_bn_stats=False,  # Keep backbone BatchNorm in inference mode (Keras advice).
        # Linear probe on cached features: with a frozen backbone (train_top=0), no random ops in
        # the train pipeline (default: the eval pipeline) and no random backbone layers, each
        # image's pooled features are computed once and only the head trains on them.
        cache_features=False,
    )


def _checkpoint() -> ml_collections.ConfigDict:
    return _section(
        every_steps=0,  # Also save every N steps (0: only at the end of each epoch).
        keep=3,  # Latest checkpoints kept for resuming.
        keep_best=1,  # Best checkpoints kept (by early_stopping.metric).
        async_save=True,
    )


def _early_stopping() -> ml_collections.ConfigDict:
    return _section(
        metric="val/accuracy",
        mode="max",
        patience=0,  # patience 0 = off.
        min_delta=0.0,
    )


def _eval() -> ml_collections.ConfigDict:
    # Reports and --mode=eval on another dataset (results.json['cross_dataset'][dataset]).
    return _section(
        dataset="",  # e.g. 'folder:/data/cinic10/test'; '' = the run's own splits.
        class_map="",  # Its class names -> the model's: 'animals10', a .json, 'a:b,c:d'.
        drop_unknown=True,  # Drop examples of classes the model does not know (else error).
        max_per_class=0,  # Evaluate at most this many examples per class (seeded); 0 = all.
        runs_table="",  # Folder (or .csv) of the runs table; '' = the workdir's parent.
    )


def _efficiency() -> ml_collections.ConfigDict:
    # results.json['efficiency'] after the final evaluation (jaxcls/evaluation/efficiency.py):
    # params, GFLOPs, batch-1 latency, inference img/s, memory, checkpoint size, compile time.
    return _section(
        enabled=True,
        repeats=20,  # Timed batch-1 forward calls (after warm-up) for the latency percentiles.
    )


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Source spec: 'digits' | 'folder:/path/to/dir' | 'csv:/path/file.csv' | 'tfds:name' |
    # 'array_record:/path/dir' (written by tools/to_array_record.py; docs/scaling.md).
    c.dataset = "digits"
    c.data = _data()
    c.model = _model()
    c.num_epochs = 10
    c.batch_size = 64  # Global batch, split over all devices (and hosts).
    c.eval_batch_size = 0  # 0 = batch_size.
    c.optimizer = _optimizer()
    c.init = _init()
    c.finetune = _finetune()
    c.label_smoothing = 0.0
    c.log_every_steps = 20
    c.eval_every_epochs = 1
    c.checkpoint = _checkpoint()
    c.early_stopping = _early_stopping()
    c.eval = _eval()
    c.efficiency = _efficiency()
    c.max_bad_steps_in_a_row = 5  # Abort after this many non-finite steps in a row.
    c.num_devices = 0  # 0 = every device; N = the first N (single process only).
    # XLA:CPU devices to create (the CPU counterpart of several GPUs): 0 = one per core, lowered
    # to the largest count dividing batch_size and eval_batch_size; 1 = a single device.
    c.cpu_devices = 0
    # Keep freed memory in the process for its next use instead of returning it to the OS
    # (glibc's malloc; jaxcls/native/malloc.py): image buffers, XLA's step buffers; a heap that
    # keeps growing gives its free pages back. Faster (docs/performance.md, "Freed memory stays
    # in the process"); False saves memory.
    c.reuse_memory = True
    c.distributed = "auto"  # jax.distributed.initialize(): 'auto' | 'on' | 'off'.
    # Persistent XLA compilation cache (jaxcls/trainer/compile_cache.py): a folder or 'off';
    # '' = $JAXCLS_COMPILATION_CACHE, else ~/.cache/jaxcls/xla.
    c.compilation_cache = ""
    return c


def _study() -> ml_collections.ConfigDict:
    # A study (python -m jaxcls.study; the format is in jaxcls/study/__init__.py): named variants
    # and/or a grid of overrides of the rest of the config, each run as its own trainer run.
    return _section(
        variants=ml_collections.ConfigDict(),  # name -> partial config, e.g. {'model': {...}}.
        grid="",  # 'optimizer.learning_rate=[1e-3,3e-4];data.rebalance=[up,mean]'.
        metric="val/accuracy",  # Sort column of study.csv / study.md (best first).
        subprocess=True,  # One process per variant (False: all in the study's process).
        smoke_variants=(),  # Smoke mode runs only these ((): all); all are still validated.
        smoke_data=ml_collections.ConfigDict(),  # field -> stand-in {classes, layout, ...}.
        smoke_epochs=2,  # Smoke mode: epochs per variant (head phase 1 epoch where it has one).
        smoke_overrides=ml_collections.ConfigDict(),  # More smoke-mode overrides (partial config).
    )


def study_config() -> ml_collections.ConfigDict:
    """`base_config` plus the ``study`` section and the ``smoke`` switch (configs/studies/)."""
    c = base_config()
    c.study = _study()
    c.smoke = False  # Every variant for a few steps on a synthetic stand-in made in the workdir.
    return c
