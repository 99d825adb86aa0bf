"""Scratch CNNs from users' Keras notebooks: our `cnn` with the same spec has Keras' parameters.

The Keras side is a real ``keras.Sequential`` (Keras 3, JAX backend) of the reports' layers:
'valid' 3x3 ``Conv2D(activation='relu')`` [+ ``BatchNormalization``] [+ ``MaxPooling2D``] per
block, ``Flatten``, ``Dense(relu)`` + ``Dropout`` per hidden layer, ``Dense(softmax)``. Both sides
are built abstractly (Keras inside ``jax.eval_shape``, ours with ``nnx.eval_shape``): the counts
come from each library's own shape logic, and the no-pooling specs (hundreds of millions of
values) allocate nothing.
"""

import math
import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxcls.models import __main__ as cli
from jaxcls.models.summary import abstract_model
from jaxcls.trainer import finetune

os.environ.setdefault("KERAS_BACKEND", "jax")

NUM_CLASSES = 10

# (filters, dense widths, BatchNorm, max-pooling) from the reports' grids.
SPECS = {
    "inc3_d256": ((32, 64, 128), (256,), False, True),
    "inc3_bn_d128": ((32, 64, 128), (128,), True, True),
    "inv3_bn_d96": ((128, 64, 32), (96,), True, True),
    "inc4_d256": ((16, 32, 64, 128), (256,), False, True),
    "inc5_bn_d128_96": ((16, 32, 64, 128, 256), (128, 96), True, True),
    "inc3_nopool_d96": ((32, 64, 128), (96,), False, False),
    "inv3_bn_nopool_d128": ((128, 64, 32), (128,), True, False),
}


def keras_counts(size, filters, dense, bn, pool) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts of the Keras Sequential for this spec."""
    return keras_model_facts(size, filters, dense, bn, pool)[:2]


def keras_model_facts(size, filters, dense, bn, pool) -> tuple[int, int, list[str]]:
    """The counts and the class names of the conv part's layers with weights (before Flatten)."""
    if os.environ.get("KERAS_BACKEND", "jax") != "jax":
        pytest.skip("needs Keras on the JAX backend")
    import keras

    counts = {}

    def build():
        layers = [keras.Input((size, size, 3))]
        for f in filters:
            layers.append(keras.layers.Conv2D(f, 3, activation="relu"))
            if bn:
                layers.append(keras.layers.BatchNormalization())
            if pool:
                layers.append(keras.layers.MaxPooling2D())
        layers.append(keras.layers.Flatten())
        for d in dense:
            layers += [keras.layers.Dense(d, activation="relu"), keras.layers.Dropout(0.5)]
        layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
        model = keras.Sequential(layers)
        for key, weights in (("t", model.trainable_weights), ("n", model.non_trainable_weights)):
            counts[key] = sum(math.prod(w.shape) for w in weights)
        flatten = [type(x).__name__ for x in model.layers].index("Flatten")
        counts["layers"] = [type(x).__name__ for x in model.layers[:flatten] if x.weights]
        return jnp.zeros(())

    jax.eval_shape(build)
    return counts["t"], counts["n"], counts["layers"]


def our_kwargs(size, filters, dense, bn, pool) -> dict:
    return dict(
        filters=filters,
        padding="valid",
        batch_norm=bn,
        bn_after_act=True,
        conv_bias=True,
        pool="max" if pool else None,
        head_pool="flatten",
        head=dense,
        head_dropout=0.5,
        input_size=size,
    )


def our_counts(model) -> tuple[int, int]:
    def count(kind):
        return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, kind)))

    return count(nnx.Param), count(nnx.BatchStat)


@pytest.mark.parametrize("size", [150, 224])
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_cnn_spec_has_keras_parameter_counts(spec, size):
    filters, dense, bn, pool = SPECS[spec]
    model = abstract_model("cnn", NUM_CLASSES, **our_kwargs(size, *SPECS[spec]))
    assert our_counts(model) == keras_counts(size, filters, dense, bn, pool)


def test_layers_with_weights_are_keras_layers_with_weights():
    """finetune.train_top_layers counts what Keras' `base_model.layers` holds with weights, in
    Keras' order: conv, BatchNorm per block here."""
    spec = SPECS["inv3_bn_d96"]
    model = abstract_model("cnn", NUM_CLASSES, **our_kwargs(150, *spec))
    ours = [path[-1] for path in finetune.weighted_layers(model, (150, 150))]
    kinds = {"Conv2D": "conv", "BatchNormalization": "bn"}
    assert ours == [kinds[name] for name in keras_model_facts(150, *spec)[2]]
    assert len(ours) == 6


def test_cli_prints_the_keras_trainable_count(capsys):
    filters, dense, bn, pool = SPECS["inc3_bn_d128"]
    kwargs = '{"filters": [32, 64, 128], "padding": "valid", "batch_norm": true, '
    kwargs += '"bn_after_act": true, "conv_bias": true, "global_pool": "flatten", '
    kwargs += '"dense": [128], "dropout": 0.5}'
    argv = ["--name=cnn", "--size=150", "--num_classes=10", "--no_flops", f"--kwargs={kwargs}"]
    assert cli.main(argv) == 0
    trainable, non_trainable = keras_counts(150, filters, dense, bn, pool)
    out = capsys.readouterr().out
    assert f"Trainable params: {trainable:,} " in out
    assert f"Non-trainable params: {non_trainable:,} " in out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ("{filters: [32]}", "--kwargs is not JSON"),
        ("[32, 64]", "--kwargs must be a JSON object"),
        ('{"filter": [32]}', "filter: not an argument of model 'cnn' (CNN); it takes: act,"),
        ('{"pool": "min"}', "pool must be 'max', 'avg' or None"),
    ],
)
def test_cli_bad_kwargs_is_one_line_and_exit_code_2(kwargs, message, capsys):
    assert cli.main(["--name=cnn", "--no_flops", f"--kwargs={kwargs}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{cli.PROG}: error: "), captured.err
    assert message in lines[0]
