r"""Animals-10: EfficientNet-B3 (Keras ImageNet weights) fine-tuned on preprocessed images
(aspect-kept resize with black padding, CLAHE, a fixed Gaussian blur) against the raw images.

  python -m jaxcls.study --config=configs/studies/animals10_preprocessed.py \
      --workdir=runs/animals10_pre --config.dataset=folder:/path/to/animals10/raw-img

Smoke test (both variants, two epochs each on a synthetic Animals-10 made in the workdir):

  python -m jaxcls.study --config=configs/studies/animals10_preprocessed.py --workdir=/tmp/a10p \
      --config.smoke=True

Both variants: 300x300 (B3's size), stratified 70/20/10 split with seed 5, Adam, batch 32, the
dense 256 + dropout 0.5 head trained for 5 epochs at 1e-3 with the backbone frozen, then
everything at 1e-5 for 10 more. 'raw' uses the weights' own preprocessing (resize, center crop,
ImageNet mean/std); 'preprocessed' applies the report's offline preprocessing as deterministic
pipeline ops, the same at training and evaluation (``tools/preprocess.py`` writes the same
images to disk, for a look).
"""

from input_pipeline.sources.class_maps import ANIMALS10
from jaxcls.config_base import study_config
from jaxcls.study.standin import standin

# Aspect-kept resize with black padding, CLAHE on lightness, a fixed Gaussian blur (sigma 1).
PREPROCESS = "decode|resize_pad({image_size}, (0, 0, 0))|clahe(2.0, 8)|blur(1.0)"
NORMALIZE = "normalize('imagenet')"  # keras:EfficientNetB3's contract (ImageNet mean/std)


def get_config():
    c = study_config()
    c.dataset = "folder:/path/to/animals10/raw-img"
    c.data.class_map = "animals10"
    c.data.split = (0.7, 0.2, 0.1)
    c.data.split_seed = 5
    c.data.image_size = 300
    c.model.name = "EfficientNetB3"
    c.model.head = (256,)
    c.model.head_dropout = 0.5
    c.init.pretrained = "keras:EfficientNetB3"
    c.num_epochs = 15
    c.batch_size = 32
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_epochs = 0.0
    c.optimizer.weight_decay = 0.0
    c.finetune.head_epochs = 5.0
    c.finetune.phase2_lr_mult = 0.01  # 1e-5 once the backbone trains
    c.study.variants = {
        "raw": {},
        "preprocessed": {
            "data": {
                "train_pipeline": f"{PREPROCESS}|flip_lr|{NORMALIZE}",
                "eval_pipeline": f"{PREPROCESS}|{NORMALIZE}",
            }
        },
    }
    c.study.metric = "test/accuracy"
    c.study.smoke_data.dataset = standin(ANIMALS10, per_class=6, size=40)
    c.study.smoke_overrides = {"data": {"image_size": 32}, "batch_size": 8}
    c.lock()
    return c
