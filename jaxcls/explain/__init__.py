"""Using a trained model: `inference` (checkpoint -> model + its eval preprocessing), `saliency`
(Grad-CAM and gradient maps through jax.grad) and `overlay` (maps back onto the original image).
Imports models/, weights/, the trainer's checkpoint layout and input_pipeline.
"""
