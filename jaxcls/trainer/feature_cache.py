"""Cached-feature linear probes (``finetune.cache_features``).

When the backbone never trains (``finetune.train_top=0``), the train pipeline is fixed (no random
ops, no mixup) and the backbone has no random layers (dropout, drop-path), every image maps to the
same pooled features at every epoch. The trainer then runs the backbone once per example before
the first step (`compute`: the train split through the train pipeline, the validation split
through the eval pipeline) and trains only the head on the stored rows, in the batch order the
image stream would have had (`input_pipeline.pipeline.train_dataset` with ``features``). The
result equals the uncached run within float tolerance (tests/trainer/test_feature_cache.py); a
resumed run recomputes the rows (they are a pure function of the data and the frozen weights).
The final evaluation reads the same rows (`eval_rows`), so the full forward pass is never
compiled; a later ``--mode=eval`` or prediction uses the whole model on images as usual.

The rows live in host memory: examples x feature width x 4 bytes (e.g. 2,048 floats for
ResNet-50: 8 KiB per image, 0.8 GB for 100,000 images).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from absl import logging
from flax import nnx

from input_pipeline import mixing, pipeline, pp
from jaxcls.evaluation import loop as eval_loop
from jaxcls.models import layers
from jaxcls.trainer import finetune, progress

LOG_EVERY_SECONDS = 10.0


@dataclasses.dataclass
class Cache:
    """The pooled features of the train and validation splits, rows in manifest order."""

    train: np.ndarray
    val: np.ndarray | None
    seconds: float

    def summary(self) -> dict:
        """What results.json records: the shapes and the time spent computing them."""
        return {
            "train": list(self.train.shape),
            "val": None if self.val is None else list(self.val.shape),
            "seconds": round(self.seconds, 2),
        }


def check(config: Any, data: pipeline.Data, model: nnx.Module, plan: finetune.Plan) -> None:
    """ValueError naming what keeps ``finetune.cache_features`` from giving the uncached result."""
    prefix = "finetune.cache_features needs "
    if plan.trainable_units:
        raise ValueError(
            prefix + "a frozen backbone, but "
            f"{len(plan.trainable_units)} backbone part(s) train (finetune.train_top="
            f"{config.finetune.train_top}, train_top_layers={config.finetune.train_top_layers}); "
            "set --config.finetune.train_top=0"
        )
    random_ops = pp.parse(data.train_pipeline).random_ops
    if random_ops:
        raise ValueError(
            prefix + f"a fixed train pipeline, but {data.train_pipeline!r} has random ops "
            f"{random_ops}; leave data.train_pipeline unset (the eval pipeline is used) or drop them"
        )
    if mixing.from_config(config.data, data.num_classes) is not None:
        raise ValueError(prefix + "unmixed images; set data.mixup=0 and data.cutmix=0")
    random_layers = [
        "/".join(map(str, (*unit, *path)))
        for unit in plan.units
        for path, sub in nnx.iter_graph(finetune.module_at(model, unit))
        if isinstance(sub, layers.Dropout | nnx.Dropout) and sub.rate > 0
    ]
    if random_layers:
        raise ValueError(
            prefix + "a backbone without random layers, but dropout/drop-path is active in "
            f"{', '.join(random_layers[:4])}{' ...' if len(random_layers) > 4 else ''}; set the "
            "model's rate to 0 (e.g. --config.model.drop_path_rate=0.0) or turn the cache off"
        )


def compute(run: Any, state: Any) -> Cache:
    """The train rows (train pipeline) and the validation rows (eval pipeline), with progress."""
    t0 = time.perf_counter()
    manifests = run.data.manifests
    train = split_features(run, state, "train", run.data.train_pipeline)
    val = None
    if len(manifests.get("val", ())):
        val = split_features(run, state, "val", run.data.eval_pipeline)
    cache = Cache(train, val, time.perf_counter() - t0)
    logging.info(
        "Cached features: train %s, val %s in %.1f s; the head trains on them",
        train.shape,
        None if val is None else val.shape,
        cache.seconds,
    )
    return cache


def eval_rows(run: Any, state: Any, split: str) -> np.ndarray:
    """The rows the final evaluation of ``split`` reads: the cached ones when they came through
    the eval pipeline (validation; train when its pipeline is the eval one, the default), else
    computed now by the same compiled program (the backbone is the frozen one)."""
    cache = run.features
    if split == "val" and cache.val is not None:
        return cache.val
    if split == "train" and run.data.train_pipeline == run.data.eval_pipeline:
        return cache.train
    return split_features(run, state, split, run.data.eval_pipeline)


def split_features(run: Any, state: Any, split: str, pipe: str) -> np.ndarray:
    """`heads.pooled_features` of every example of ``split`` through ``pipe``, in manifest order
    (every process gets all rows: the outputs of the step are replicated)."""
    shards = eval_loop.shards(run)
    n = len(run.data.manifests[split])
    total = pipeline.eval_batch_count(n, shards["batch_size"], shards["shard_count"])
    batches = pipeline.eval_batches(run.data, split, run.config, pipeline=pipe, **shards)
    rows, t0, last = [], time.perf_counter(), time.perf_counter()
    outputs = eval_loop.real_rows(run, run.compiled.features, state.params, state.rest, batches)
    for i, out in enumerate(outputs):
        rows.append(out["features"])
        now = time.perf_counter()
        if now - last >= LOG_EVERY_SECONDS or i + 1 == total:
            rate = (i + 1) / (now - t0)
            logging.info(
                "Caching %s features: batch %d/%d, %.1f img/s, ETA %s",
                split,
                i + 1,
                total,
                rate * shards["batch_size"] * shards["shard_count"],
                progress.format_eta((total - i - 1) / rate),
            )
            last = now
    found = np.concatenate(rows)
    ordered = np.empty_like(found)
    positions = eval_loop.manifest_positions(n, shards["batch_size"], shards["shard_count"])
    ordered[positions] = found
    return ordered
