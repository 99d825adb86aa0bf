"""Input pipeline: sources, decoding, preprocessing ops, splits and grain datasets."""
