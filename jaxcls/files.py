"""JSON files of a run (results.json, meta): written atomically, readable by any later process."""

from __future__ import annotations

import json
import math
import os

import numpy as np


def json_default(o):
    """``json.dump``'s ``default``: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def to_json_tree(obj):
    """``obj`` with numpy values turned into plain JSON types (a deep copy)."""
    return json.loads(json.dumps(obj, default=json_default))


def write_json(path: str, obj: dict) -> None:
    """Writes JSON atomically: a temporary file beside ``path``, then a rename, so a kill never
    leaves a half-written file that a rerun would trust."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=json_default)
    os.replace(tmp, path)


def read_json(path: str, default=None):
    """The JSON object in ``path``, or ``default`` when the file does not exist."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float when it is finite, else None (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None
