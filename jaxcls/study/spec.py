"""A study config -> its variants, each a complete, checked trainer config.

`expand` lists the variants (named variants crossed with the grid), `variant_config` builds one
trainer config (the study config without its ``study`` section and ``smoke`` switch, then the
variant's overrides), and `check_variant` creates its model abstractly, so a misspelt field, a
model argument the model does not take or an unknown preprocessing op fails before anything runs.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import itertools
import re
from typing import Any

import ml_collections

STUDY_KEYS = ("study", "smoke")  # Fields of a study config that are not trainer fields.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class StudyError(ValueError):
    """Bad study input (config, grid, metric); the command reports it as one line, exit code 2."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One run of a study: its folder name and its overrides (dotted field -> value), in order."""

    name: str
    overrides: dict[str, Any]


def flatten(partial, prefix: str = "") -> dict[str, Any]:
    """A partial config (nested ConfigDicts or dicts) -> ``{'a.b': value}`` in insertion order."""
    out = {}
    for key, value in partial.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict | dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets, parentheses, braces and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def parse_value(text: str):
    """A grid value: a Python literal (``3e-4``, ``(32, 64)``, ``True``, ``'x'``) or else the
    bare text as a string (``up``, ``mobilenetv2_100``)."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_grid(text: str) -> dict[str, list]:
    """``'a.b=[1,2];c=[x,y]'`` -> ``{'a.b': [1, 2], 'c': ['x', 'y']}``; StudyError if malformed."""
    grid = {}
    for item in _split_top(text or "", ";"):
        if not item.strip():
            continue
        key, eq, values = item.partition("=")
        key, values = key.strip(), values.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
            raise StudyError(f"--grid item {item.strip()!r} is not 'field.name=[v1,v2,...]'")
        if not (values.startswith("[") and values.endswith("]")):
            raise StudyError(f"--grid {key}: values must be a list in brackets, got {values!r}")
        items = [v for v in _split_top(values[1:-1], ",") if v.strip()]
        if not items:
            raise StudyError(f"--grid {key}: the list of values is empty")
        if key in grid:
            raise StudyError(f"--grid names {key} twice")
        grid[key] = [parse_value(v) for v in items]
    return grid


def _value_name(value) -> str:
    if isinstance(value, list | tuple):
        return "-".join(_value_name(v) for v in value) or "none"
    return str(value) if value != "" else "none"


def grid_names(grid: dict[str, list]) -> list[tuple[str, dict]]:
    """Every combination of the grid as ``(name, overrides)``; the name joins ``field=value``
    with the field's last part (its full dotted name where two last parts are the same)."""
    last = [k.rsplit(".", 1)[-1] for k in grid]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(grid, last)}
    out = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        name = ",".join(f"{short[k]}={_value_name(v)}" for k, v in overrides.items())
        out.append((_NAME_UNSAFE.sub("_", name), overrides))
    return out


def expand(config: ml_collections.ConfigDict, grid_text: str = "") -> list[Variant]:
    """The study's variants: each named variant (or the base alone) crossed with the grid
    (``grid_text`` from the command line replaces the config's ``study.grid``)."""
    grid = parse_grid(grid_text or config.study.grid)
    named = [(n, flatten(p)) for n, p in config.study.variants.items()] or [("base", {})]
    points = grid_names(grid) if grid else [("", {})]
    variants = []
    for (name, overrides), (point, grid_overrides) in itertools.product(named, points):
        full = (
            name
            if not point
            else point
            if len(named) == 1 and name == "base"
            else f"{name}_{point}"
        )
        variants.append(Variant(_NAME_UNSAFE.sub("_", full), {**overrides, **grid_overrides}))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StudyError(f"variant names {duplicates} occur twice: rename them")
    return variants


def trainer_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
    """The study config's top-level text fields (``dataset`` and any the study adds, such as
    ``cinic10``): what ``{name}`` in a variant's text values stands for."""
    return {k: v for k, v in config.items() if isinstance(v, str)}


def _format(value, fields: dict[str, str], key: str):
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        return value.format_map(fields)
    except (KeyError, IndexError, ValueError) as e:
        raise StudyError(
            f"{key}={value!r}: cannot fill in {e}; known names: {', '.join(sorted(fields))}"
        ) from None


def set_field(config: ml_collections.ConfigDict, dotted: str, value) -> None:
    """``config.a.b = value`` for an existing field; StudyError naming the known fields
    otherwise, or when the type does not fit."""
    *path, last = dotted.split(".")
    node = config
    for i, part in enumerate(path):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise StudyError(f"{dotted} is not a config field ({'.'.join(path[: i + 1])} is not)")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict):
        raise StudyError(f"{dotted} is not a config field ({'.'.join(path)} is a value)")
    if last not in node:
        known = ", ".join(sorted(node.keys()))
        where = ".".join(path) or "the top level"
        raise StudyError(f"{dotted} is not a config field; fields of {where}: {known}")
    old = node[last]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        with node.unlocked():
            node[last] = value
    except TypeError as e:
        raise StudyError(f"{dotted}={value!r}: {e}") from None


def variant_config(
    config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
    """The trainer config of one variant: ``config`` without `STUDY_KEYS`, then ``overrides``
    (``{name}`` in a text value filled in from the config's top-level text fields, and
    ``{image_size}`` from ``data.image_size``), locked."""
    fields = trainer_fields(config)  # before the overrides: '{dataset}' is the study's dataset
    out = copy.deepcopy(config)
    with out.unlocked():
        for key in STUDY_KEYS:
            del out[key]
    for key, value in overrides.items():
        if key.split(".")[0] in STUDY_KEYS:
            raise StudyError(f"{key}: a variant cannot change the study section")
        set_field(out, key, value)
    # Filled in last, so '{image_size}' is the variant's final size (smoke mode's included).
    fields["image_size"] = str(out.data.image_size)
    for key, value in overrides.items():
        if isinstance(value, str) and "{" in value:
            set_field(out, key, _format(value, fields, key))
    out.lock()
    return out


def check_variant(name: str, config: ml_collections.ConfigDict, num_classes: int) -> None:
    """Creates the variant's model abstractly (shapes only) and parses its pipelines; StudyError
    naming the variant if the model, an argument of it or a preprocessing op is wrong."""
    from input_pipeline import pp
    from jaxcls import models
    from jaxcls.models import summary
    from jaxcls.trainer import setup

    try:
        size = int(config.data.image_size)
        kwargs = models.fill_input_size(config.model.name, setup.model_kwargs(config), size)
        summary.abstract_model(config.model.name, num_classes, **kwargs)
        for pipeline in (config.data.train_pipeline, config.data.eval_pipeline):
            if pipeline:
                pp.parse(pipeline)
    except (ValueError, TypeError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StudyError(f"variant {name}: {first}") from None
