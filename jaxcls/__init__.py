"""jaxcls: pure-JAX image classification."""
