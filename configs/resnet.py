r"""ResNet from scratch on the built-in digits dataset (32x32, CIFAR-style stem).

Command (CPU, offline):

  python -m jaxcls.main --config=configs/resnet.py --workdir=/tmp/jaxcls/resnet

``--config=configs/resnet.py:resnet50`` picks another depth (18, 34, 50, 101, 152).
"""

from jaxcls.config_base import base_config


def get_config(arg: str = "resnet18"):
    c = base_config()
    c.model.name = arg
    c.model.stem = "cifar"  # 3x3 stride-1 stem, no max-pool: right for 32x32 inputs.
    c.num_epochs = 10
    c.batch_size = 64
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    c.optimizer.weight_decay = 5e-4
    c.data.image_size = 32
    c.lock()
    return c
