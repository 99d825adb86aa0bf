"""The trainer: a run's stages from mesh to checkpoints, and the pieces they use.

`run` (orchestration: `run.run`, `run.run_eval`), `setup` (Run, ModelParts, restore), `loop`
(steps, logging, validation, checkpoints, early stopping), `progress` (console + clu writer),
`steps` (the pure jitted train/eval steps), `checkpoint` (Orbax; the one module that knows the
checkpoint layout), `optim`, `finetune`, `parallel` (mesh, batch placement), `weights_init`.
May import evaluation/, reporting/, models/, weights/ and input_pipeline/. `checkpoint` and
`parallel` import nothing of jaxcls, so evaluation/ and explain/ may use them too.
"""
