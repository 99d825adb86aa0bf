"""Benchmarks behind tools/bench_*.py, profile_step.py and param_counts.py: the real train step,
models, input pipeline, ops, A/B variants, XLA profiles, reference parameter counts. May import any
jaxcls package and input_pipeline (nothing imports it); JAX lazily, and not at all in param_counts.
"""
