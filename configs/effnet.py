r"""EfficientNet-B0 on the built-in digits dataset (1,797 real 8x8 handwritten digits, upscaled).

Command (CPU, offline) — the README's main job:

  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/jaxcls/effnet

``--config=configs/effnet.py:efficientnet_b3`` (or any EfficientNet in ``python -m jaxcls.models``)
picks another variant.
"""

from jaxcls.config_base import base_config


def get_config(arg: str = "efficientnet_b0"):
    c = base_config()
    c.model.name = arg
    c.num_epochs = 20
    c.batch_size = 64
    c.optimizer.learning_rate = 2e-3
    c.data.image_size = 32
    c.lock()
    return c
