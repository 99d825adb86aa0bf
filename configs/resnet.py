r"""ResNet from scratch on the built-in digits dataset (32x32).

Command (CPU, offline):

  python -m jaxcls.main --config=configs/resnet.py --workdir=/tmp/jaxcls/resnet

``--config=configs/resnet.py:resnet50`` picks another depth (18, 34, 50, 101, 152).
"""

from jaxcls.config_base import base_config


def get_config(arg: str = "resnet18"):
    c = base_config()
    c.model.name = arg
    # The ImageNet stem (7x7 stride 2 + max-pool) leaves 8x8 maps from 32x32 inputs, enough for
    # 8x8 digits. 'cifar' (3x3 stride 1, no pool) keeps 32x32 maps: 16x the compute, for GPUs.
    c.model.stem = "imagenet"
    c.num_epochs = 10
    c.batch_size = 64
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    c.optimizer.weight_decay = 5e-4
    c.data.image_size = 32
    c.lock()
    return c
