"""The model zoo: Flax NNX model families behind one name registry.

What lives here: `registry` (names, aliases, `create`), `layers` / `conv` / `depthwise` (shared
building blocks and their CPU implementations) and one module per family, which registers its
models on import. Imports only jax, flax and :mod:`jaxcls.native`; nothing else of jaxcls.

Usage::

    from jaxcls import models
    model = models.create("efficientnet_b0", num_classes=10, rngs=nnx.Rngs(params=0, dropout=1))
    logits, features = model(x, train=True)   # x: [B, H, W, 3] float, NHWC
"""

# Importing the family modules registers their models.
from jaxcls.models import (  # noqa: F401
    cnn,
    densenet,
    efficientnet,
    inception,
    layers,
    resnet,
    resnetv2,
    vgg,
)
from jaxcls.models.registry import (
    HEAD,
    HEAD_PARTS,
    ModelInfo,
    all_model_args,
    check_model_args,
    create,
    fill_input_size,
    list_aliases,
    list_models,
    model_args,
    model_info,
    register,
)

__all__ = [
    "HEAD",
    "HEAD_PARTS",
    "ModelInfo",
    "all_model_args",
    "check_model_args",
    "create",
    "fill_input_size",
    "list_aliases",
    "list_models",
    "model_args",
    "model_info",
    "register",
]
