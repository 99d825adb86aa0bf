"""Deployable formats of a trained model: `formats` (StableHLO, ONNX, SavedModel, TFLite: write
and run back), `metadata` (the preprocessing JSON written beside an artefact) and `exporter`
(checkpoint -> artefact with the parity check; the library half of ``tools/export.py``). Imports
explain/ (checkpoint loading), models/ (the portable kernels), input_pipeline and files.
"""
