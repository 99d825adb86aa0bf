r"""tf_flowers at 150x150: a scratch CNN with and without dropout, InceptionV3 as a frozen feature
extractor with a Dense(256) + Dropout(0.5) head (RMSprop 2e-5), and InceptionV3 fine-tuned with
augmentation.

  python -m jaxcls.study --config=configs/studies/flowers_inception.py --workdir=runs/flowers

(tf_flowers must be prepared once: ``tfds build tf_flowers --file_format=array_record``; or give
``--config.dataset=folder:/path/to/flower_photos``.)

Smoke test (every variant, two epochs each on a synthetic 5-class folder made in the workdir):

  python -m jaxcls.study --config=configs/studies/flowers_inception.py --workdir=/tmp/flowers \
      --config.smoke=True

Stratified 70/15/15 split, batch 32. The CNNs are the Keras tutorial's (3x3 'same' convs 16, 32,
64 with max-pooling, Flatten, Dense 128; Adam 1e-3, 15 epochs), 'cnn_dropout' adds random flips,
rotations and zooms and Dropout(0.2) before the classifier. 'inception_frozen' trains only the
head with the backbone frozen in inference mode, 10 epochs, on features cached once
(``finetune.cache_features``); 'inception_finetune'
trains the head for 5 epochs, then the top two stages too at RMSprop 2e-5 with augmentation.
"""

from jaxcls.config_base import study_config
from jaxcls.study.standin import standin

CLASSES = ("dandelion", "daisy", "tulips", "sunflowers", "roses")  # tfds tf_flowers' names
AUGMENT = "flip_lr|rotate(36)|zoom(0.1)"  # Keras RandomFlip, RandomRotation(0.1), RandomZoom(0.1)
# The Keras tutorial model: no BatchNorm, 'same' convs, Flatten -> Dense(128).
CNN = dict(
    name="cnn", filters=(16, 32, 64), padding="symmetric", batch_norm=False, global_pool="flatten"
)
INCEPTION = {"name": "InceptionV3", "head": (256,), "head_dropout": 0.5}


def get_config():
    c = study_config()
    c.dataset = "tfds:tf_flowers"
    c.data.image_size = 150
    c.data.split = (0.7, 0.15, 0.15)
    c.model.name = "cnn"  # each variant names its model
    c.num_epochs = 15
    c.batch_size = 32
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.weight_decay = 0.0
    c.study.variants = {
        "cnn": {"model": {**CNN, "dense": (128,)}},
        "cnn_dropout": {
            "model": {**CNN, "dense": (128,), "drop_rate": 0.2},
            "data": {
                "train_pipeline": f"decode|resize({{image_size}})|{AUGMENT}|value_range(0, 1)",
                "eval_pipeline": "decode|resize({image_size})|value_range(0, 1)",
            },
        },
        "inception_frozen": {
            "model": INCEPTION,
            "init": {"pretrained": "keras:InceptionV3"},
            "num_epochs": 10,
            "optimizer": {"name": "rmsprop", "learning_rate": 2e-5},
            # Backbone frozen throughout and no augmentation: the pooled features are computed
            # once and only the head trains on them (the same result, much faster).
            "finetune": {"train_top": 0, "cache_features": True},
        },
        "inception_finetune": {
            "model": INCEPTION,
            "init": {"pretrained": "keras:InceptionV3"},
            "data": {
                "train_pipeline": f"decode|resize({{image_size}})|{AUGMENT}|value_range(-1, 1)",
                "eval_pipeline": "decode|resize({image_size})|value_range(-1, 1)",
            },
            "num_epochs": 15,
            "optimizer": {"name": "rmsprop", "learning_rate": 2e-5},
            "finetune": {"head_epochs": 5.0, "train_top": 2},
        },
    }
    c.study.metric = "test/accuracy"
    c.study.smoke_data.dataset = standin(CLASSES, per_class=8, size=48)
    # InceptionV3 needs 75x75 or more.
    c.study.smoke_overrides = {"data": {"image_size": 75}, "batch_size": 8}
    c.lock()
    return c
