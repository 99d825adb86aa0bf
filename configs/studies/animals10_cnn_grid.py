r"""Animals-10 (Kaggle, Italian folder names): ~30 scratch CNNs, then MobileNetV2 / ResNet50V2 /
EfficientNetV2-S with dense heads, frozen then fine-tuned at 1e-5; stratified 70/20/10, seed 5.

  python -m jaxcls.study --config=configs/studies/animals10_cnn_grid.py --workdir=runs/animals10 \
      --config.dataset=folder:/path/to/animals10/raw-img

Smoke test (every variant built, four run for two epochs on a synthetic Animals-10 in the workdir):

  python -m jaxcls.study --config=configs/studies/animals10_cnn_grid.py --workdir=/tmp/a10 \
      --config.smoke=True

The scratch CNNs are Keras-style (3x3 'valid' convs, 2x2 max-pooling after each, Flatten, dense
layers, no BatchNorm) at 150x150, Adam, batch 32, 25 epochs: conv3/4/5 blocks with filters
increasing or inverted x dense 96/128/256 (18), global average pooling instead of Flatten (2),
down/up/mean resampling (3), learning rates 1e-4..7e-4 (4), dropout 0.5 and BatchNorm (2). The
backbones (224x224, ImageNet weights, dense 256 + dropout 0.5 head) train the head for 5 epochs
at 1e-3, then everything at 1e-5 (``phase2_lr_mult``) for 10 more.
"""

from input_pipeline.sources.class_maps import ANIMALS10
from jaxcls.config_base import study_config
from jaxcls.study.standin import standin

FILTERS = {  # increasing, and inverted (widest first)
    "conv3": (32, 64, 128),
    "conv4": (32, 64, 128, 256),
    "conv5": (16, 32, 64, 128, 256),
    "conv4to128": (16, 32, 64, 128),
    "conv3inv": (128, 64, 32),
    "conv4inv": (128, 64, 32, 16),
}
BACKBONES = {  # variant -> (model, pretrained tag)
    "mobilenetv2": ("MobileNetV2", "keras:MobileNetV2"),
    "resnet50v2": ("ResNet50V2", "keras:ResNet50V2"),
    "efficientnetv2s": ("EfficientNetV2S", "keras:EfficientNetV2S"),
}


def cnn(filters, dense=256, **model):
    """A Keras-style scratch CNN variant (partial config)."""
    keras = dict(padding="valid", batch_norm=False, pool="max", global_pool="flatten", dropout=0.0)
    return {"model": {"name": "cnn", "filters": filters, "dense": (dense,), **keras, **model}}


def variants() -> dict:
    out = {}
    for fname, filters in FILTERS.items():
        for dense in (96, 128, 256):
            out[f"{fname}_d{dense}"] = cnn(filters, dense)
    for fname in ("conv4to128", "conv5"):
        out[f"{fname}_d256_gap"] = cnn(FILTERS[fname], 256, global_pool="avg")
    for how in ("down", "up", "mean"):
        out[f"conv4to128_d256_{how}"] = {**cnn(FILTERS["conv4to128"]), "data": {"rebalance": how}}
    for lr in (1e-4, 2e-4, 5e-4, 7e-4):
        out[f"conv4to128_d256_lr{lr:.0e}".replace("e-0", "e-")] = {
            **cnn(FILTERS["conv4to128"]),
            "optimizer": {"learning_rate": lr},
        }
    out["conv4to128_d256_drop50"] = cnn(FILTERS["conv4to128"], dropout=0.5)
    out["conv4to128_d256_bn"] = cnn(FILTERS["conv4to128"], batch_norm=True)
    for name, (model, tag) in BACKBONES.items():
        out[name] = {
            "model": {"name": model, "head": (256,), "head_dropout": 0.5},
            "init": {"pretrained": tag},
            "data": {"image_size": 224},
            "num_epochs": 15,
            "optimizer": {"learning_rate": 1e-3},
            "finetune": {"head_epochs": 5.0, "phase2_lr_mult": 0.01},  # then 1e-5
        }
    return out


def get_config():
    c = study_config()
    c.dataset = "folder:/path/to/animals10/raw-img"
    c.data.class_map = "animals10"
    c.data.split = (0.7, 0.2, 0.1)
    c.data.split_seed = 5
    c.data.image_size = 150
    c.model.name = "cnn"  # each variant names its model and architecture
    c.num_epochs = 25
    c.batch_size = 32
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-4
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.weight_decay = 0.0
    c.study.variants = variants()
    c.study.metric = "test/accuracy"
    # Smoke: conv5 needs 94 px or more ('valid' convs and pooling); 8 images per class.
    c.study.smoke_data.dataset = standin(ANIMALS10, per_class=8, size=48)
    c.study.smoke_overrides = {"data": {"image_size": 96}, "batch_size": 8}
    c.study.smoke_variants = (
        "conv5_d96",
        "conv4to128_d256_up",
        "conv4to128_d256_gap",
        "mobilenetv2",
    )
    c.lock()
    return c
