"""Metrics from a split's logits and labels (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def basic_metrics(
    logits: np.ndarray, labels: np.ndarray, losses: np.ndarray, *, num_classes: int
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy, macro and weighted F1 of one split.

    F1 averages run over the classes present in the labels or the predictions (scikit-learn's
    default), so a class missing from a small split does not count as a zero.
    """
    if len(labels) == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "macro_f1": float("nan")}
    preds = logits.argmax(-1)
    k = min(5, num_classes)
    topk = np.argsort(-logits, axis=-1)[:, :k]
    out = {
        "loss": float(np.mean(losses)),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "macro_f1": float(skm.f1_score(labels, preds, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(labels, preds, average="weighted", zero_division=0)),
        f"top{k}_accuracy": float(np.mean((topk == labels[:, None]).any(-1))),
        "count": int(len(labels)),
    }
    return out
