r"""15 animal classes (a folder with its own train/ and test/): EfficientNet-B0 with torchvision
ImageNet weights, the top layers unfrozen, early stopping on validation loss, 80/20 train/val.

  python -m jaxcls.study --config=configs/studies/animals15_effnet_b0.py --workdir=runs/animals15 \
      --config.dataset=folder:/path/to/animals15

Smoke test (every variant, two epochs each on a synthetic 15-class train/test folder made in the
workdir):

  python -m jaxcls.study --config=configs/studies/animals15_effnet_b0.py --workdir=/tmp/a15 \
      --config.smoke=True

The test/ folder stays the test set; train/ is split 80/20 into train and validation
(``data.split='source'``, ``data.val_fraction=0.2``), stratified, seed 42. 224x224, Adam 1e-3,
batch 32, up to 30 epochs, stopping when validation loss has not improved for 5 epochs (the best
checkpoint by validation loss is the one evaluated). Variants: the report's 'top20' (the head,
then the top 20 weight layers unfrozen at a tenth of the learning rate, counted the Keras way:
docs/finetuning.md), against the frozen backbone (linear probe with a dense head) and the whole
network unfrozen.
"""

from jaxcls.config_base import study_config
from jaxcls.study.standin import standin

CLASSES = (
    "Bear", "Bird", "Cat", "Cow", "Deer", "Dog", "Dolphin", "Elephant", "Giraffe", "Horse",
    "Kangaroo", "Lion", "Panda", "Tiger", "Zebra",
)  # fmt: skip


def get_config():
    c = study_config()
    c.dataset = "folder:/path/to/animals15"  # with train/ and test/ class folders
    c.data.split = "source"
    c.data.val_fraction = 0.2
    c.data.split_seed = 42
    c.data.image_size = 224
    c.model.name = "efficientnet_b0"
    c.model.head = (256,)
    c.model.head_dropout = 0.3
    c.init.pretrained = "torchvision:efficientnet_b0.IMAGENET1K_V1"
    c.num_epochs = 30
    c.batch_size = 32
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.weight_decay = 0.0
    c.early_stopping.metric = "val/loss"
    c.early_stopping.mode = "min"
    c.early_stopping.patience = 5
    c.finetune.head_epochs = 3.0
    c.finetune.phase2_lr_mult = 0.1
    c.study.variants = {
        "top20": {"finetune": {"train_top_layers": 20}},
        "frozen": {"finetune": {"head_epochs": 0.0, "train_top": 0}},
        "all": {"finetune": {"train_top": -1}},
    }
    c.study.metric = "test/accuracy"
    c.study.smoke_data.dataset = standin(CLASSES, layout=("train", "test"), per_class=5, size=40)
    c.study.smoke_overrides = {"data": {"image_size": 32}, "batch_size": 8}
    c.lock()
    return c
