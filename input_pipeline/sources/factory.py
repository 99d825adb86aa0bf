"""`make_source`: the ``config.dataset`` spec string -> a source (lazy imports per kind)."""

from __future__ import annotations

from input_pipeline.sources.base import Source, SourceError
from input_pipeline.sources.folder import CsvSource, DigitsSource, FolderSource


def make_source(spec: str, config=None) -> Source:
    """Builds the source named by a ``config.dataset`` spec string (see the module docstring).

    ``config`` is the ``config.data`` ConfigDict (or None); it supplies ``class_map`` for folder
    sources and ``tfds_data_dir`` (and ``tfds_image_key``, ``tfds_label_key``) for tfds sources.
    """
    get = (lambda k, d=None: config.get(k, d)) if config is not None else (lambda k, d=None: d)
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return DigitsSource()
    if kind == "folder" and arg:
        return FolderSource(arg, class_map=get("class_map"))
    if kind == "csv" and arg:
        return CsvSource(arg)
    if kind == "tfds" and arg:
        from input_pipeline.sources.tfds import TfdsSource

        return TfdsSource(
            arg,
            data_dir=get("tfds_data_dir") or None,
            image_key=get("tfds_image_key", "image") or "image",
            label_key=get("tfds_label_key", "label") or "label",
        )
    raise SourceError(
        f"unknown dataset spec {spec!r}; expected 'digits', 'folder:/path/dir', "
        "'csv:/path/file.csv' or 'tfds:name'"
    )
