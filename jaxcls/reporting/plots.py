"""Matplotlib figures of a run: training curves, confusion matrix, ROC and PR curves, and a grid of
misclassified examples. Each function returns a Figure; `save` writes it as PNG and `to_array`
renders it for TensorBoard. The Agg backend is used, so no display is needed (servers, CI).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

_MAX_LEGEND = 20  # Beyond this many classes, per-class legends are unreadable.


def save(fig: Figure, path: str, dpi: int = 110) -> str:
    """Writes ``fig`` as PNG (``path`` local or a gs:// URL: `jaxcls.files`) and closes it;
    returns the path."""
    from jaxcls import files

    with files.atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def phase_boundaries(history: list[dict]) -> list[tuple[float, str]]:
    """Epochs where the training phase changes (e.g. frozen backbone -> fine-tuning).

    History rows may carry a ``phase`` name; a boundary is drawn between the last epoch of one
    phase and the first of the next, labelled with the new phase.
    """
    out = []
    for prev, row in zip(history, history[1:]):
        if row.get("phase") is not None and row.get("phase") != prev.get("phase"):
            out.append(((prev["epoch"] + row["epoch"]) / 2.0, str(row["phase"])))
    return out


def training_curves(history: list[dict]) -> Figure:
    """Loss, accuracy and macro-F1 per epoch, train vs val, with phase boundaries marked where
    the ``phase`` the trainer records in each history row changes (`phase_boundaries`)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    epochs = [row["epoch"] for row in history]
    for ax, metric, title in zip(
        axes, ("loss", "accuracy", "macro_f1"), ("loss", "accuracy", "macro-F1")
    ):
        for split, style, color in (("train", "-o", "C0"), ("val", "-s", "C1")):
            key = f"{split}/{metric}"
            points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, color=color, markersize=3, label=split)
        for x, name in phase_boundaries(history):
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
            ax.text(x, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: dict, class_names: list[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix as colours, with the counts written in each cell."""
    counts = np.asarray(matrix["counts"])
    norm = np.asarray(matrix["normalized"], float)
    k = len(class_names)
    side = min(4 + 0.45 * k, 24)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=7
                    )
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return fig


def _curves(curves: dict, xkey: str, ykey: str, score: str, title: str, diagonal: bool) -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for name, c in curves.items():
        if c[score] is None:
            continue
        label = f"{name} ({c[score]:.3f})" if len(curves) <= _MAX_LEGEND else None
        ax.plot(c[xkey], c[ykey], linewidth=1.2, label=label)
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) <= _MAX_LEGEND and ax.lines:
        ax.legend(fontsize=7, loc="lower right" if diagonal else "lower left")
    return fig


def roc_curves(roc: dict, macro_auc: float | None, title: str = "") -> Figure:
    """One-vs-rest ROC curve of every class, AUC in the legend."""
    fig = _curves(roc, "fpr", "tpr", "auc", title or "ROC (one vs rest)", diagonal=True)
    return _label(fig, "false positive rate", "true positive rate", "macro AUC", macro_auc)


def pr_curves(pr: dict, macro_ap: float | None, title: str = "") -> Figure:
    """One-vs-rest precision-recall curve of every class, average precision in the legend."""
    fig = _curves(
        pr, "recall", "precision", "average_precision", title or "precision-recall", False
    )
    return _label(fig, "recall", "precision", "macro AP", macro_ap)


def _label(fig: Figure, xlabel: str, ylabel: str, macro_name: str, macro: float | None):
    ax = fig.axes[0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if macro is not None:
        ax.set_title(f"{ax.get_title()}: {macro_name} {macro:.3f}")
    fig.tight_layout()
    return fig


def image_grid(images: list[np.ndarray], captions: list[str], title: str = "", cols: int = 6):
    """Images (uint8 RGB, any sizes) in a grid, each with a caption (e.g. true/predicted)."""
    n = max(1, len(images))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=7)
    if not images:
        axes[0, 0].text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
