r"""CIFAR-10 <-> CINIC-10: train on CIFAR-10 (tfds, its official 50k/10k split) and evaluate on
CINIC-10's test folder, and the reverse, for a base CNN, MobileNetV2, ResNet50V2,
EfficientNet-B0 and DenseNet121 (ImageNet weights, fine-tuned).

  python -m jaxcls.study --config=configs/studies/cifar10_cinic10.py --workdir=runs/cinic \
      --config.cinic10=folder:/path/to/cinic10

(CIFAR-10 must be prepared once: ``tfds build cifar10 --file_format=array_record``; or give
``--config.dataset=folder:/path/to/cifar10`` with train/ and test/ class folders.)

Smoke test (two of the ten variants, one each way, on synthetic stand-ins made in the workdir;
all ten are built and checked):

  python -m jaxcls.study --config=configs/studies/cifar10_cinic10.py --workdir=/tmp/cinic \
      --config.smoke=True

Each model trains on one dataset's own splits (``data.split='source'``: CIFAR-10 train/test with
10% of train for validation; CINIC-10 train/valid/test) and is then evaluated on 500 images per
class sampled from the other (``eval.max_per_class``); the table's cross-dataset accuracy is that
evaluation (``--config.cifar10_test=folder:/path/to/cifar10/test`` evaluates on a folder
instead). Scratch CNN at 32x32 (Adam 1e-3, 30 epochs); backbones at 96x96 (upscaled), dense
256 + dropout 0.5 head for 3 epochs at 1e-3, then everything at 1e-4 for 7 more.
"""

from jaxcls.config_base import study_config
from jaxcls.study.standin import standin

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)  # fmt: skip  (CIFAR-10's tfds names, and CINIC-10's folder names)
MODELS = {  # variant prefix -> (model, pretrained tag, image size)
    "cnn": ("cnn", "", 32),
    "mobilenetv2": ("MobileNetV2", "keras:MobileNetV2", 96),
    "resnet50v2": ("ResNet50V2", "keras:ResNet50V2", 96),
    "efficientnet_b0": ("efficientnet_b0", "torchvision:efficientnet_b0.IMAGENET1K_V1", 96),
    "densenet121": ("DenseNet121", "keras:DenseNet121", 96),
}
DIRECTIONS = {  # suffix -> (training dataset, evaluation dataset)
    "cifar10_to_cinic10": ("{dataset}", "{cinic10}/test"),
    "cinic10_to_cifar10": ("{cinic10}", "{cifar10_test}"),
}


def variants() -> dict:
    out = {}
    for prefix, (model, tag, size) in MODELS.items():
        for suffix, (train_on, evaluate_on) in DIRECTIONS.items():
            variant = {
                "dataset": train_on,
                "eval": {"dataset": evaluate_on},
                "model": {"name": model},
                "data": {"image_size": size},
            }
            if not tag:  # a Keras-style CNN: 3 conv blocks, dense 256, dropout 0.5
                variant["model"].update(filters=(32, 64, 128), dense=(256,), dropout=0.5)
            else:
                variant["model"].update(head=(256,), head_dropout=0.5)
                variant["init"] = {"pretrained": tag}
                variant["num_epochs"] = 10
                variant["finetune"] = {"head_epochs": 3.0, "phase2_lr_mult": 0.1}
            out[f"{prefix}_{suffix}"] = variant
    return out


def get_config():
    c = study_config()
    c.dataset = "tfds:cifar10"
    c.cinic10 = "folder:/path/to/cinic10"  # with train/, valid/, test/ class folders
    # CIFAR-10 as an evaluation set (all 60k pooled, then 500 per class sampled), or a folder.
    c.cifar10_test = "tfds:cifar10"
    c.data.split = "source"
    c.data.val_fraction = 0.1
    c.eval.max_per_class = 500
    c.model.name = "cnn"  # each variant names its model
    c.num_epochs = 30
    c.batch_size = 64
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.study.variants = variants()
    c.study.metric = "cross_accuracy"
    c.study.smoke_data.dataset = standin(CLASSES, layout=("train", "test"), per_class=6, size=32)
    c.study.smoke_data.cinic10 = standin(
        CLASSES, layout=("train", "valid", "test"), per_class=4, size=32
    )
    c.study.smoke_data.cifar10_test = standin(CLASSES, per_class=4, size=32)
    c.study.smoke_overrides = {"data": {"image_size": 32}, "batch_size": 8}
    c.study.smoke_variants = ("cnn_cifar10_to_cinic10", "mobilenetv2_cinic10_to_cifar10")
    c.lock()
    return c
