"""The eval loop: the compiled eval step over a whole split, and the order its outputs come in."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from input_pipeline import pipeline
from jaxcls.evaluation import metrics
from jaxcls.trainer import parallel


def per_process_batch(run) -> int:
    """The eval batch each process feeds (``eval_batch_size``, 0 meaning ``batch_size``)."""
    global_batch = run.config.eval_batch_size or run.config.batch_size
    return parallel.local_batch_size(global_batch, run.mesh)


def shards(run) -> dict:
    """The eval batching of this process: its per-process batch size and its shard."""
    return dict(
        batch_size=per_process_batch(run),
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )


def real_rows(run, step, params: Any, rest: Any, batches) -> Iterator[dict[str, np.ndarray]]:
    """Runs ``step`` (a compiled step with replicated outputs and a ``'mask'``) over padded
    ``batches``; yields each global batch's outputs on the host with the padding rows dropped."""
    for batch in batches:
        out = jax.device_get(step(params, rest, parallel.shard_batch(batch, run.mesh)))
        keep = out.pop("mask") > 0
        yield {k: v[keep] for k, v in out.items()}


def evaluate_split(
    run, params: Any, rest: Any, split: str, features: np.ndarray | None = None
) -> dict[str, Any]:
    """Runs the eval step over a whole split of ``run.data``; returns metrics plus the
    per-example ``logits``, ``labels`` and ``losses`` (in `manifest_positions` order).

    With ``features`` (the split's cached rows in manifest order, `trainer.feature_cache`) only
    the head runs, on them."""
    if features is None:
        batches = pipeline.eval_batches(run.data, split, run.config, **shards(run))
        step = run.compiled.eval
    else:
        labels = np.asarray(run.data.manifests[split].labels, np.int32)
        batches = pipeline.array_batches({"features": features, "label": labels}, **shards(run))
        step = run.compiled.eval_features
    rows = list(real_rows(run, step, params, rest, batches))
    logits, labels, losses = (
        np.concatenate([r[k] for r in rows]) for k in ("logits", "label", "loss")
    )
    basic = metrics.basic_metrics(logits, labels, losses, num_classes=run.data.num_classes)
    return {"metrics": basic, "logits": logits, "labels": labels, "losses": losses}


def example_keys(run, split: str, n: int) -> list:
    """The manifest key of each of the ``n`` examples `evaluate_split` returned for ``split``."""
    keys = run.data.manifests[split].keys
    return [keys[i] for i in manifest_positions(n, per_process_batch(run), jax.process_count())]


def manifest_positions(n: int, batch_per_process: int, processes: int) -> np.ndarray:
    """The manifest row of each example in the order `evaluate_split` returns them.

    Process ``p`` reads rows ``p, p + P, ...`` in batches of ``batch_per_process``; each global
    batch concatenates the processes' batches and the padding is dropped. With one process the
    order is the manifest's.
    """
    if processes <= 1:
        return np.arange(n)
    total = sum(len(range(p, n, processes)) for p in range(processes))
    if total != n:
        raise ValueError("inconsistent example count")
    order = []
    per = math.ceil(n / processes)
    for b in range(math.ceil(per / batch_per_process)):
        for p in range(processes):
            mine = len(range(p, n, processes))
            for j in range(batch_per_process):
                local = b * batch_per_process + j
                if local < mine:
                    order.append(p + processes * local)
    return np.asarray(order)
