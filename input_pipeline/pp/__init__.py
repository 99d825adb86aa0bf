"""Preprocessing ops composed by a pipeline string, big_vision style (``decode|resize(224)|...``).

`registry` holds the op registry and the string parser; `ops_image` (decode, geometry, value
range) and `ops_augment` (random augmentation, CLAHE, blur, RandAugment) register their ops into
it. Imports only `input_pipeline.decode`, numpy, OpenCV and Pillow.
"""

from input_pipeline.pp import ops_augment, ops_image  # noqa: F401  (registers every op)
from input_pipeline.pp.ops_image import IMAGENET_MEAN, IMAGENET_STD, resize_to, size_hw
from input_pipeline.pp.registry import Preprocess, known_ops, parse, register

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocess",
    "known_ops",
    "parse",
    "register",
    "resize_to",
    "size_hw",
]
