r"""Four scratch CNNs on the built-in digits dataset (1,797 8x8 digits upscaled to 32x32), five
epochs each: a small study that runs anywhere in minutes (CPU, offline).

  python -m jaxcls.study --config=configs/studies/digits_cnn.py --workdir=/tmp/jaxcls/digits_study

Try a grid on top: ``--grid='optimizer.learning_rate=[3e-3,1e-3]'`` (eight runs). The measured
table is in docs/studies.md.
"""

from jaxcls.config_base import study_config

KERAS = dict(padding="valid", batch_norm=False, pool="max", global_pool="flatten")


def get_config():
    c = study_config()
    c.dataset = "digits"
    c.data.image_size = 32
    c.num_epochs = 5
    c.batch_size = 64
    c.optimizer.learning_rate = 3e-3
    c.study.variants = {
        "cnn_small": {"model": {"name": "cnn_small"}},
        "cnn": {"model": {"name": "cnn"}},
        "keras_flatten_d64": {
            "model": {"name": "cnn", "filters": (16, 32), "dense": (64,), **KERAS}
        },
        "keras_flatten_d64_drop50": {
            "model": {"name": "cnn", "filters": (16, 32), "dense": (64,), "dropout": 0.5, **KERAS}
        },
    }
    c.study.metric = "test/accuracy"
    c.lock()
    return c
