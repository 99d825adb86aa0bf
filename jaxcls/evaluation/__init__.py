"""Evaluation: the eval loop over a split (`loop`), metrics from logits (`metrics`), the final
evaluation of a run's best checkpoint (`final`) and evaluation on another dataset
(`cross_dataset`). May import reporting/, the trainer's checkpoint/parallel helpers, models and
input_pipeline; reporting/ never imports it.
"""
