"""Class maps: rename a dataset's class names (e.g. Animals-10's Italian folders) -- one parser.

Training (``config.data.class_map``, folder sources) and cross-dataset evaluation
(``config.eval.class_map``) both read their maps through `parse_class_map`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from input_pipeline.sources.base import SourceError

# Animals-10 (Kaggle, alessiocorrado99/animals10) ships Italian folder names.
ANIMALS10 = {
    "cane": "dog",
    "cavallo": "horse",
    "elefante": "elephant",
    "farfalla": "butterfly",
    "gallina": "chicken",
    "gatto": "cat",
    "mucca": "cow",
    "pecora": "sheep",
    "ragno": "spider",
    "scoiattolo": "squirrel",
}
CLASS_MAPS = {"animals10": ANIMALS10}


def parse_class_map(spec) -> dict[str, str]:
    """A class-name mapping ``{dataset's name: new name}`` from a config value.

    ``spec`` is one of: empty/None (no renaming); a mapping; a built-in name (``'animals10'``); an
    inline JSON object (``'{"cane": "dog"}'``); the path of a ``.json`` file holding an object; or
    inline pairs (``'gatto:cat,cane:dog'``).

    Raises:
      SourceError: an unknown name, invalid JSON, a missing file or malformed pairs.
    """
    if not spec:
        return {}
    if isinstance(spec, Mapping) or hasattr(spec, "items"):
        return _as_str_dict(dict(spec.items()), spec)
    text = str(spec).strip()
    if text in CLASS_MAPS:
        return dict(CLASS_MAPS[text])
    if text.startswith("{"):
        return _as_str_dict(_load_json(lambda: json.loads(text), text), text)
    if text.endswith(".json"):
        path = os.path.expanduser(text)
        if not os.path.isfile(path):
            raise SourceError(f"class_map file not found: {path}")

        def read():
            with open(path) as f:
                return json.load(f)

        return _as_str_dict(_load_json(read, path), path)
    pairs = [p for p in text.split(",") if p.strip()]
    if not pairs or not all(":" in p for p in pairs):
        raise SourceError(
            f"unknown class_map {text!r}; expected a built-in map ({sorted(CLASS_MAPS)}), "
            'a JSON object such as \'{"cane": "dog"}\', a .json file or \'cane:dog,gatto:cat\' pairs'
        )
    return {a.strip(): b.strip() for a, b in (p.split(":", 1) for p in pairs)}


def _load_json(load, where: str):
    try:
        return load()
    except json.JSONDecodeError as e:
        raise SourceError(f"class_map is not valid JSON ({e}): {where!r}") from None


def _as_str_dict(obj, where) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise SourceError(f"class_map must be a JSON object (name -> name), got {where!r}")
    return {str(k): str(v) for k, v in obj.items()}
