"""`make_source`: the ``config.dataset`` spec string -> a source (lazy imports per kind)."""

from __future__ import annotations

from input_pipeline.sources.base import Source, SourceError
from input_pipeline.sources.folder import CsvSource, DigitsSource, FolderSource


def make_source(spec: str, config=None, own_splits: bool = False) -> Source:
    """Builds the source named by a ``config.dataset`` spec string (kinds: see `folder`, `tfds`).

    ``config`` is the ``config.data`` block (a ConfigDict or a dict with its fields), or None for
    a source without options; it supplies ``class_map`` for folder sources and ``tfds_data_dir``,
    ``tfds_image_key`` and ``tfds_label_key`` for tfds sources. ``own_splits`` lists a folder as
    ``train/``, ``valid/`` (or ``val/``), ``test/`` split folders (``data.split='source'``).
    """
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return DigitsSource()
    if kind == "folder" and arg:
        return FolderSource(
            arg, class_map=None if config is None else config["class_map"], own_splits=own_splits
        )
    if kind == "csv" and arg:
        return CsvSource(arg)
    if kind == "array_record" and arg:
        from input_pipeline.sources.array_record import ArrayRecordSource

        return ArrayRecordSource(arg)
    if kind == "tfds" and arg:
        from input_pipeline.sources.tfds import TfdsSource

        if config is None:
            return TfdsSource(arg)
        return TfdsSource(
            arg,
            data_dir=config["tfds_data_dir"] or None,
            image_key=config["tfds_image_key"],
            label_key=config["tfds_label_key"],
        )
    raise SourceError(
        f"unknown dataset spec {spec!r}; expected 'digits', 'folder:/path/dir', "
        "'csv:/path/file.csv', 'tfds:name' or 'array_record:/path/dir'"
    )
