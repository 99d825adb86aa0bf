"""Batch-level mixup and cutmix, producing soft labels ``'label_onehot'``.

mixup (Zhang et al. 2018, arXiv:1710.09412) blends two images and their one-hot labels with a
weight lam ~ Beta(alpha, alpha). cutmix (Yun et al. 2019, arXiv:1905.04899) pastes a box of one
image into another and mixes the labels by the pasted area. As in timm's ``Mixup``, each batch is
mixed with its own reverse (example i with example B-1-i), one lam per batch, and when both are
enabled one of the two is chosen per batch with probability ``switch_prob``.

The trainer must use ``batch['label_onehot']`` (float32 [B, K]) as the target of a soft-label
cross entropy whenever it is present; ``batch['label']`` keeps the unmixed labels for metrics.
Randomness comes from grain's per-record rng (here a record is a batch), so it is reproducible.
"""

from __future__ import annotations

import math

import numpy as np


class BatchMixer:
    """A grain ``random_map`` transform on a batch dict (see the module docstring)."""

    def __init__(
        self,
        num_classes: int,
        *,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
    ):
        if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= prob <= 1:
            raise ValueError("mixup/cutmix alpha must be >= 0 and prob in [0, 1]")
        self.num_classes = int(num_classes)
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)

    def __repr__(self) -> str:
        return (
            f"BatchMixer(mixup={self.mixup_alpha}, cutmix={self.cutmix_alpha}, "
            f"prob={self.prob}, switch_prob={self.switch_prob})"
        )

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        images = batch["image"]
        onehot = np.eye(self.num_classes, dtype=np.float32)[batch["label"]]
        out = dict(batch)
        out["label_onehot"] = onehot
        if rng.random() >= self.prob:
            return out
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha == 0 or rng.random() < self.switch_prob
        )
        other = slice(None, None, -1)  # Pair example i with example B-1-i.
        if use_cutmix:
            lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha))
            top, bottom, left, right = cutmix_box(images.shape[1:3], lam, rng)
            images = images.copy()
            images[:, top:bottom, left:right] = batch["image"][other, top:bottom, left:right]
            # Use the area actually pasted (the box is clipped at the borders).
            lam = 1.0 - (bottom - top) * (right - left) / (images.shape[1] * images.shape[2])
        else:
            lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
            images = (lam * images + (1.0 - lam) * images[other]).astype(np.float32)
        out["image"] = images
        out["label_onehot"] = (lam * onehot + (1.0 - lam) * onehot[other]).astype(np.float32)
        return out


def cutmix_box(hw: tuple[int, int], lam: float, rng: np.random.Generator):
    """A box of area about (1 - lam) * H * W centred uniformly, clipped to the image.

    Returns (top, bottom, left, right)."""
    h, w = hw
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return top, bottom, left, right


def from_config(cfg, num_classes: int) -> BatchMixer | None:
    """A `BatchMixer` from ``config.data.{mixup, cutmix, mix_prob, mix_switch_prob}`` (``cfg`` is
    ``config.data``), or None when both alphas are 0 (the default: batches then have no
    'label_onehot')."""
    mixup = float(cfg.mixup)
    cutmix = float(cfg.cutmix)
    if mixup == 0 and cutmix == 0:
        return None
    return BatchMixer(
        num_classes,
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        prob=float(cfg.mix_prob),
        switch_prob=float(cfg.mix_switch_prob),
    )
