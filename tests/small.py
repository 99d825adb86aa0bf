"""A small, fast training config for trainer tests: cnn_small on digits at 16x16."""

from configs import cnn as cnn_config


def small_config(num_epochs: int = 3, **overrides):
    """The cnn recipe made small; ``overrides`` use dotted names: ``{'optimizer.learning_rate': 0}``."""
    c = cnn_config.get_config()
    c.unlock()
    c.model.name = "cnn_small"
    c.data.image_size = 16
    c.num_epochs = num_epochs
    c.batch_size = 32
    c.log_every_steps = 10
    c.checkpoint.async_save = False
    for k, v in overrides.items():
        target = c
        *path, last = k.split(".")
        for p in path:
            target = target[p]
        target[last] = v
    c.lock()
    return c
