"""Reports of a finished evaluation: the text report, PNG plots and TensorBoard images
(`report`), the figures (`plots`), the runs table with optional MLflow (`runs`) and the
TensorBoard writer the trainer uses too (`tensorboard`). Works on
plain arrays and dicts; imports only input_pipeline.decode (to show original images).
"""
