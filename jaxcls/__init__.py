"""jaxcls: pure-JAX image classification.

Subpackages by stage, arrows pointing down: `main` (flags) -> `trainer` (a run's stages) ->
`evaluation` (eval loop, metrics, final and cross-dataset evaluation) -> `reporting` (text, plots,
runs table); `explain` (checkpoint -> model, saliency, overlays) for trained models; `models`
(the zoo), `weights` (pretrained files -> models) and `native` (CPU kernels) at the bottom, beside
the top-level `input_pipeline` package. `config_base` holds every config default; `files` the
atomic JSON writes. No module imports another that imports it back (tests/test_imports.py).
"""
