"""Reports of a finished evaluation: the text report, PNG plots and TensorBoard images
(`report`), the figures (`plots`) and the runs table with optional MLflow (`runs`). Works on
plain arrays and dicts; imports only input_pipeline.decode (to show original images).
"""
