"""Using a trained model: `inference` (checkpoint -> model + its eval preprocessing), `predict`
(top-k classes of image files), `saliency` (Grad-CAM and gradient maps through jax.grad),
`explain_files` (saliency maps of image files written as overlays) and `overlay` (maps back onto
the original image). Imports models/, weights/, the trainer's checkpoint layout and input_pipeline.
"""
