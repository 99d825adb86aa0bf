"""Metrics from a split's logits and labels (scikit-learn does the counting).

`basic_metrics` is what the training loop logs every epoch; `full_metrics` is the final report of
a split (per-class table, confusion matrix, ROC and PR curves, most-confused pairs, highest-loss
examples). `map_classes` and `remap_labels` (in :mod:`jaxcls.evaluation.cross_dataset`) turn
another dataset's labels into the model's for cross-dataset evaluation (e.g. a CIFAR-10 model on
CINIC-10, or Animals-10 folders in Italian).
"""

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


# ------------------------------------------------------------------------------ full report
def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[list, list]:
    """At most ``max_points`` points of a curve, evenly spaced along it, ends kept.

    ROC/PR curves have one point per distinct score; results.json only needs enough to plot them
    (the AUC values are computed on the full curves).
    """
    if len(x) > max_points:
        idx = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[idx], y[idx]
    return [round(float(v), 6) for v in x], [round(float(v), 6) for v in y]


def per_class_table(labels: np.ndarray, preds: np.ndarray, class_names: list[str]) -> dict:
    """Precision, recall, F1 and support of every class, plus macro and weighted averages.

    Every class gets a row (support 0 when absent from the split). The averages run over the
    classes present in the labels or the predictions, as in `basic_metrics` and scikit-learn's
    default, so a class missing from a small split does not count as a zero.
    """
    k = len(class_names)
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, preds, labels=np.arange(k), zero_division=0
    )
    per_class = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(class_names)
    }
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(
            labels, preds, average=avg, zero_division=0
        )
        averages[f"{avg}_avg"] = {
            "precision": float(ap),
            "recall": float(ar),
            "f1": float(af),
            "support": int(len(labels)),
        }
    return {"per_class": per_class, **averages}


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict:
    """Confusion matrix (rows: true class, columns: predicted) as counts and row-normalised."""
    counts = skm.confusion_matrix(labels, preds, labels=np.arange(num_classes))
    rows = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    return {"counts": counts.tolist(), "normalized": np.round(normalized, 6).tolist()}


def one_vs_rest_curves(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str], max_points: int = 101
) -> tuple[dict, dict]:
    """ROC and precision-recall curves of each class against the rest, with their areas.

    A class with no positive (or no negative) example in the split has no defined curve: it is
    reported with ``auc``/``average_precision`` None and empty curves rather than a misleading 0.
    The macro averages run over the classes whose curve is defined.
    """
    roc, pr = {}, {}
    for i, name in enumerate(class_names):
        y = labels == i
        if y.all() or not y.any():
            roc[name] = {"fpr": [], "tpr": [], "auc": None}
            pr[name] = {"recall": [], "precision": [], "average_precision": None}
            continue
        fpr, tpr, _ = skm.roc_curve(y, probs[:, i])
        prec, rec, _ = skm.precision_recall_curve(y, probs[:, i])
        fx, ty = _thin(fpr, tpr, max_points)
        rx, py = _thin(rec, prec, max_points)
        roc[name] = {"fpr": fx, "tpr": ty, "auc": float(skm.auc(fpr, tpr))}
        pr[name] = {
            "recall": rx,
            "precision": py,
            "average_precision": float(skm.average_precision_score(y, probs[:, i])),
        }
    return roc, pr


def most_confused(counts: np.ndarray, class_names: list[str], top: int = 10) -> list[dict]:
    """The ``top`` off-diagonal cells of a confusion matrix, largest first (ties: by class)."""
    counts = np.asarray(counts)
    rows = counts.sum(axis=1)
    pairs = [
        (int(counts[t, p]), t, p)
        for t in range(len(class_names))
        for p in range(len(class_names))
        if t != p and counts[t, p] > 0
    ]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {
            "true": class_names[t],
            "predicted": class_names[p],
            "count": n,
            "fraction_of_true": n / int(rows[t]),
        }
        for n, t, p in pairs[:top]
    ]


def highest_loss(
    probs: np.ndarray,
    labels: np.ndarray,
    losses: np.ndarray,
    class_names: list[str],
    keys: list | None = None,
    top: int = 20,
) -> list[dict]:
    """The ``top`` examples with the largest loss: what the model gets most confidently wrong.

    ``index`` is the example's row in its split manifest; ``key`` (file path or record index) is
    added when ``keys`` is given.
    """
    order = np.argsort(-losses, kind="stable")[:top]
    preds = probs.argmax(-1)
    out = []
    for i in order:
        row = {
            "index": int(i),
            "true": class_names[int(labels[i])],
            "predicted": class_names[int(preds[i])],
            "loss": float(losses[i]),
            "prob_true": float(probs[i, labels[i]]),
            "prob_predicted": float(probs[i, preds[i]]),
        }
        if keys is not None:
            key = keys[int(i)]
            row["key"] = key.item() if isinstance(key, np.generic) else key
        out.append(row)
    return out


def full_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    losses: np.ndarray,
    *,
    class_names: list[str],
    keys: list | None = None,
    top_k: int = 5,
    top_pairs: int = 10,
    top_losses: int = 20,
    curve_points: int = 101,
) -> dict:
    """Everything results.json reports about one split.

    Args:
      logits: float [N, K]; labels: int [N]; losses: float [N] per-example loss.
      class_names: the K class names (the model's classes, in label order).
      keys: optional per-example identifiers (the split manifest's keys) for the loss ranking.

    Returns:
      ``loss``, ``accuracy``, ``top{k}_accuracy``, ``count``, ``per_class``, ``macro_avg``,
      ``weighted_avg``, ``confusion_matrix`` (``counts``, ``normalized``), ``roc`` and ``pr`` per
      class with their AUC / average precision (``roc_auc_macro``, ``average_precision_macro``),
      ``most_confused`` and ``highest_loss``.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    losses = np.asarray(losses, np.float64)
    num_classes = len(class_names)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits of shape {logits.shape} for {num_classes} classes")
    if len(labels) == 0:
        return {"count": 0}
    probs = softmax(logits)
    preds = probs.argmax(-1)
    k = min(top_k, num_classes)
    topk = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    cm = confusion(labels, preds, num_classes)
    roc, pr = one_vs_rest_curves(probs, labels, class_names, curve_points)
    aucs = [c["auc"] for c in roc.values() if c["auc"] is not None]
    aps = [c["average_precision"] for c in pr.values() if c["average_precision"] is not None]
    return {
        "count": int(len(labels)),
        "loss": float(losses.mean()),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        f"top{k}_accuracy": float(np.mean((topk == labels[:, None]).any(-1))),
        **per_class_table(labels, preds, class_names),
        "confusion_matrix": cm,
        "roc": roc,
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "pr": pr,
        "average_precision_macro": float(np.mean(aps)) if aps else None,
        "most_confused": most_confused(np.asarray(cm["counts"]), class_names, top_pairs),
        "highest_loss": highest_loss(probs, labels, losses, class_names, keys, top_losses),
    }


def classification_report_text(
    labels: np.ndarray, logits: np.ndarray, class_names: list[str], title: str = ""
) -> str:
    """scikit-learn's text classification report (every class listed), under an optional title."""
    preds = np.asarray(logits).argmax(-1)
    text = skm.classification_report(
        labels,
        preds,
        labels=np.arange(len(class_names)),
        target_names=list(class_names),
        digits=4,
        zero_division=0,
    )
    return f"{title}\n{'=' * len(title)}\n{text}" if title else text
