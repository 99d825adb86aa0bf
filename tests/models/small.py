"""Small versions of the zoo's families for tests that run whole models on CPU."""

import os

# name -> overrides that shrink depth (not the block types) to keep CPU compile times short.
REPRESENTATIVES = {
    "cnn": {},
    "cnn_conv4invto128": {},
    "resnet18": {"stem": "cifar"},
    "resnet50": {"depths": (1, 1, 2, 1)},
    "efficientnet_b0": {"depth_multiplier": 0.1},
    "tf_efficientnetv2_b0": {"depth_multiplier": 0.1},
    "mobilenetv2_100": {"depth_multiplier": 0.1},
    "resnetv2_50": {"depths": (1, 1, 2, 1)},
    "densenet121": {"block_config": (1, 2, 1, 2), "growth_rate": 8},
    "vgg11_bn": {"cfg": ((8,), (16,), (16, 16), (32,), (32,)), "mlp_hidden": 64},
    "inception_v3": {},
}


def slow() -> bool:
    """JAXCLS_SLOW_TESTS=1: the tests run full-size models (and wider sweeps) instead."""
    return bool(os.environ.get("JAXCLS_SLOW_TESTS"))


def overrides(name: str) -> dict:
    """``name``'s shrinking overrides, none under JAXCLS_SLOW_TESTS."""
    return {} if slow() else dict(REPRESENTATIVES.get(name, {}))
