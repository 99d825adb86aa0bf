"""Pretrained weights: readers, layout rules, name maps and the tag registry."""
