"""Whether a workdir's checkpoint can be resumed by this jaxcls with this config, checked on its
``meta`` before any array is read, so a mismatch is one sentence saying what differs instead of a
shape error from deep inside Orbax.

Every checkpoint's meta records ``jaxcls_version`` and ``checkpoint_format`` (`CHECKPOINT_FORMAT`,
raised whenever the layout of the saved state changes incompatibly) beside the model's name,
arguments and classes. A checkpoint without a format predates the field and has format 1's layout.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os

from jaxcls.trainer import checkpoint as ckpt_lib

CHECKPOINT_FORMAT = 1
# What must match for a saved state to fit the model this config builds.
MODEL_KEYS = ("model", "model_kwargs", "num_classes", "class_names")


@functools.cache
def jaxcls_version() -> str:
    try:
        return importlib.metadata.version("jaxcls")
    except importlib.metadata.PackageNotFoundError:  # A source tree that was never installed.
        return "unknown"


def version_fields() -> dict:
    """The keys every checkpoint's meta carries about the code that wrote it."""
    return {"jaxcls_version": jaxcls_version(), "checkpoint_format": CHECKPOINT_FORMAT}


def differences(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's meta and the meta this run would write, as phrases."""
    found = []
    fmt = int(saved.get("checkpoint_format", 1))
    if fmt != CHECKPOINT_FORMAT:
        found.append(
            f"checkpoint format {fmt} (written by jaxcls {saved.get('jaxcls_version', '<0.1')}) "
            f"but this jaxcls {jaxcls_version()} reads format {CHECKPOINT_FORMAT}"
        )
    for key in MODEL_KEYS:
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            for k in sorted(set(old) | set(new)):
                if old.get(k) != new.get(k):
                    found.append(f"{key}.{k}: {_show(old, k)} saved, now {_show(new, k)}")
        elif old != new:
            found.append(f"{key}: {_short(old)} saved, now {_short(new)}")
    return found


def _show(d: dict, k: str) -> str:
    return repr(d[k]) if k in d else "<unset>"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_resume(checkpoints_dir: str, current: dict) -> None:
    """Raises ValueError naming every difference when the newest step in
    ``{checkpoints_dir}/latest`` cannot be resumed into a run whose meta is ``current``."""
    latest = os.path.join(checkpoints_dir, ckpt_lib.LATEST)
    if not os.path.isdir(latest):
        return
    steps = [int(d) for d in os.listdir(latest) if d.isdigit()]
    steps = [s for s in steps if ckpt_lib.is_step_dir(os.path.join(latest, str(s)))]
    if not steps:
        return
    step_dir = os.path.join(latest, str(max(steps)))
    try:
        saved = ckpt_lib.read_meta(step_dir)
    except (ckpt_lib.CheckpointError, ValueError, OSError):
        return  # An unreadable step: restore_latest reports it and falls back.
    found = differences(saved, current)
    if found:
        raise ValueError(
            f"cannot resume the checkpoint in {step_dir} with this config: "
            + "; ".join(found)
            + ". Use the config it was trained with, or a new --workdir"
        )
