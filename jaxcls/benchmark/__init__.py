"""Measuring models and the input pipeline: `measure` (the measuring core: params, GFLOPs,
latency, throughput, compile time, memory, size on disk), `compare` (tools/compare.py's table and
plots), and the logic behind tools/bench_*.py, profile_step.py and param_counts.py. May import any
jaxcls package and input_pipeline; only evaluation.efficiency imports it. JAX is imported lazily,
and not at all by param_counts.
"""
