"""Pretrained weights: the tag registry (URLs, hashes, preprocessing contracts), safe readers
(.safetensors, .pth without running pickles, .h5 as datasets), name maps and layout rules, and the
one strict assignment of arrays to a model (`assign`). Imports models/ and input_pipeline's op
constants; never the trainer.
"""
