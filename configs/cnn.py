r"""Scratch CNN on the built-in digits dataset (1,797 real 8x8 handwritten digits, upscaled to 32x32).

Command (CPU, offline):

  python -m jaxcls.main --config=configs/cnn.py --workdir=/tmp/jaxcls/cnn

Variants: ``--config=configs/cnn.py:conv4invto128`` is the user-report design (4 convs
16->32->64->128, dense 256, dropout 0.5). Any folder: ``--config.dataset=folder:/path/to/dir``.
"""

from jaxcls.config_base import base_config


def get_config(arg: str = "cnn"):
    c = base_config()
    c.model.name = {"cnn": "cnn", "conv4invto128": "cnn_conv4invto128"}.get(arg, arg)
    c.num_epochs = 15
    c.batch_size = 64
    c.optimizer.learning_rate = 3e-3
    c.data.image_size = 32
    c.lock()
    return c
