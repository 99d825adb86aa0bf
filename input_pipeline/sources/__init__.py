"""Data sources: list a dataset's examples as (key, label, class name) and load one example.

`base` (the contract and errors), `class_maps` (the one class-map parser), `folder` (folders, CSV
manifests, the built-in digits), `tfds` (prepared TensorFlow Datasets), `array_record`
(``tools/to_array_record.py`` folders), `factory` (spec string -> source). Imports only
`input_pipeline.decode` (and tfds, grain's ArrayRecord reader, lazily).
"""

from input_pipeline.sources.base import (
    IMAGE_EXTENSIONS,
    DirectInput,
    Source,
    SourceError,
    manifest_hash,
)
from input_pipeline.sources.class_maps import ANIMALS10, CLASS_MAPS, parse_class_map
from input_pipeline.sources.factory import make_source
from input_pipeline.sources.folder import CsvSource, DigitsSource, FolderSource, list_images

__all__ = [
    "ANIMALS10",
    "CLASS_MAPS",
    "IMAGE_EXTENSIONS",
    "CsvSource",
    "DigitsSource",
    "DirectInput",
    "FolderSource",
    "Source",
    "SourceError",
    "list_images",
    "make_source",
    "manifest_hash",
    "parse_class_map",
]
