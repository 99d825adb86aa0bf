"""Pretrained weights: the tag registry (URLs, hashes, preprocessing contracts), safe readers
(.safetensors, .pth without running pickles, .h5 as datasets), name maps and layout rules, and the
one strict assignment of arrays to a model (`assign`), and `export_checkpoint` (a weight file ->
a jaxcls checkpoint). Imports models/, input_pipeline's op constants and, to write a checkpoint,
the trainer's checkpoint layout module; nothing else of the trainer.
"""
