"""Shared by the multi-process tests: a tiny synthetic image folder, the trainer command, and the
debug record of which examples each process trained on (``parallel.record_example_ids``)."""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLOURS = ((220, 30, 30), (30, 200, 40), (20, 40, 230))


def make_image_folder(root: str, per_class: int = 40, hw=(16, 16)) -> str:
    """``root/<class>/img_NNN.png``: 3 classes of noisy solid colours (the class is learnable)."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(COLOURS):
        folder = os.path.join(root, f"class_{c}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            image = np.clip(np.array(colour) + rng.integers(-40, 41, (*hw, 3)), 0, 255)
            Image.fromarray(image.astype(np.uint8)).save(os.path.join(folder, f"img_{i:03d}.png"))
    return root


def trainer_args(dataset: str, workdir: str, cache: str, **overrides) -> list[str]:
    """``python -m jaxcls.main ...`` for a tiny run: 120 images -> 96 train (6 global batches of
    16 per epoch), cnn_small at 16 px, a checkpoint every 4 steps."""
    fields = {
        "dataset": dataset,
        "model.name": "cnn_small",
        "data.image_size": 16,
        "data.split": "(0.8, 0.1, 0.1)",
        "num_epochs": 4,
        "batch_size": 16,
        "checkpoint.every_steps": 4,
        "efficiency.enabled": False,
        "compilation_cache": cache,
        "log_every_steps": 6,
        **overrides,
    }
    return [
        sys.executable,
        "-m",
        "jaxcls.main",
        "--config=configs/cnn.py",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in fields.items()),
    ]


def read_ids(folder: str) -> dict[int, dict[int, list[int]]]:
    """``{process: {step: ids}}`` from the debug record; a step written twice (before a kill and
    again after the resume) keeps its last line."""
    out: dict[int, dict[int, list[int]]] = {}
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("ids_p") and name.endswith(".txt")):
            continue
        steps = out.setdefault(int(name[5:-4]), {})
        with open(os.path.join(folder, name)) as f:
            for line in f:
                if line.endswith("\n"):
                    step, *ids = map(int, line.split())
                    steps[step] = ids
    return out


def global_ids(per_process: dict[int, dict[int, list[int]]]) -> dict[int, list[int]]:
    """``{step: sorted ids of the global batch}`` (all processes together)."""
    steps = set().union(*(p.keys() for p in per_process.values()))
    return {s: sorted(i for p in per_process.values() for i in p.get(s, [])) for s in steps}


def clean_env(ids_dir: str) -> dict:
    """The test process's environment minus its 8-device XLA flag, plus the ids record."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAXCLS_DEBUG_IDS_DIR"] = ids_dir
    env["PYTHONPATH"] = ROOT
    return env
