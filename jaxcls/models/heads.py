"""Classifier heads shared by every model family: pooling, hidden dense layers, the classifier.

The Keras transfer-learning recipe ``base(include_top=False) -> GlobalAveragePooling2D ->
Dense(256, relu) -> Dropout(0.5) -> Dense(num_classes)`` is, on any registered model::

    models.create("resnet50", num_classes=5, head=(256,), head_dropout=0.5, rngs=...)

Every model takes the same three arguments (``--config.model.head=(256,)`` etc. on the command
line):

* ``head``: hidden dense widths between the pooled features and the classifier (default ``()``:
  none); each hidden layer is dense -> ReLU (the model's activation for ``cnn``) -> dropout;
* ``head_dropout``: the dropout rate after each hidden layer (default 0.0);
* ``head_pool``: ``'avg'`` (default), ``'max'`` or ``'flatten'`` (Keras ``Flatten``: the width is
  fixed by the image side, the model's ``input_size`` argument, which the trainer sets from
  ``data.image_size``; an int, or (H, W) for non-square images).

A model then has ``head_hidden`` (a `DenseHead`: the pooling and the hidden layers),
``head_drop`` (the model's own ``drop_rate`` dropout before the classifier) and ``head`` (the
classifier, ``nnx.Linear``). ``features['pre_logits']`` is the last hidden layer's output (after
its activation, before its dropout), or the pooled vector without hidden layers. Hidden layers
belong to the head (`registry.HEAD_PARTS`): a frozen backbone trains them, pretrained weights
leave them freshly initialised.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcls.models import layers
from jaxcls.models.registry import HEAD_HIDDEN as HIDDEN  # The attribute holding the DenseHead.

POOLS = ("avg", "max", "flatten")
AFTER_PRE_LOGITS = ("aux_logits",)  # features entries that follow 'pre_logits'.


def hidden_widths(head) -> tuple[int, ...]:
    """``head`` as a tuple of positive ints (an int is one layer; None or () none)."""
    if head is None:
        return ()
    widths = (head,) if isinstance(head, int) else tuple(head)
    if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(
            f"head must be a tuple of positive layer widths, e.g. (256,), got {head!r}"
        )
    return widths


def _pair(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    return int(h), int(w)


class DenseHead(nnx.Module):
    """Pooling, then hidden dense layers (dense -> act -> dropout): a head without its classifier.

    ``channels`` is the width of the map it pools; ``flat_features`` the flattened width
    (H * W * C) when ``pool='flatten'``, for images of side ``input_size``. ``width`` is the output width (what the classifier
    takes). Calling it returns ``(pre_logits, out)``: the last hidden layer's activation and that
    after its dropout (the same array without hidden layers).
    """

    def __init__(
        self,
        channels: int,
        *,
        hidden: Sequence[int] = (),
        dropout: float = 0.0,
        pool: str = "avg",
        flat_features: int | None = None,
        input_size=None,
        act: str = "relu",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pool not in POOLS:
            raise ValueError(f"head_pool must be one of {POOLS}, got {pool!r}")
        if pool == "flatten" and not flat_features:
            raise ValueError("head_pool='flatten' needs the flattened width (flat_features)")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {dropout!r}")
        layers.get_act(act)
        self.pool = pool
        self.act = act
        self.flat_features = flat_features
        self.input_size = input_size
        width = flat_features if pool == "flatten" else channels
        dense, drops = [], []
        for w in hidden_widths(hidden):
            dense.append(nnx.Linear(width, w, dtype=dtype, param_dtype=jnp.float32, rngs=rngs))
            drops.append(layers.dropout(float(dropout), rngs=rngs))
            width = w
        self.dense = nnx.List(dense)
        self.drops = nnx.List(drops)
        self.width = width

    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        return self.dense_layers(self.pool_map(x), train=train)

    def pool_map(self, x: jax.Array) -> jax.Array:
        """The backbone's map [B, H, W, C] as the vector the hidden layers take (no parameters:
        what a cached-feature probe stores, `pooled_features`)."""
        if self.pool == "flatten":
            if x.shape[1] * x.shape[2] * x.shape[3] != self.flat_features:
                raise ValueError(
                    f"a {x.shape[1]}x{x.shape[2]}x{x.shape[3]} map does not fit the flatten "
                    f"width {self.flat_features} built for input_size={self.input_size}; create "
                    "the model with input_size=<image side>"
                )
            return x.reshape(x.shape[0], -1)
        return layers.global_pool(x, self.pool)

    def dense_layers(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """The hidden layers on a pooled vector: ``(pre_logits, out)`` as `__call__`."""
        pre_logits = x
        act = layers.get_act(self.act)
        for dense, drop in zip(self.dense, self.drops, strict=True):
            pre_logits = act(dense(x))
            x = drop(pre_logits, deterministic=not train)
        return pre_logits, x


def attach(
    model: nnx.Module,
    channels: int,
    num_classes: int,
    *,
    head=(),
    head_dropout: float = 0.0,
    head_pool: str = "avg",
    drop_rate: float = 0.0,
    input_size=None,
    in_chans: int = 3,
    act: str = "relu",
    dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> None:
    """Builds ``model``'s head: ``head_hidden``, ``head_drop``, ``head``; sets ``num_features``.

    Call it last in ``__init__``: ``head_pool='flatten'`` traces ``model.forward_features``
    abstractly at ``input_size`` to find the flattened width.
    """
    flat = None
    if head_pool == "flatten":
        if not input_size:
            raise ValueError(
                "head_pool='flatten' needs input_size (the image side the model is built for)"
            )
        h, w = _pair(input_size)
        spec = jax.ShapeDtypeStruct((1, h, w, in_chans), jnp.float32)
        shape = jax.eval_shape(lambda x: model.forward_features(x, train=False)[0], spec).shape
        if min(shape[1:3]) < 1:
            raise ValueError(f"input_size {input_size} leaves an empty map before the head")
        flat = int(shape[1] * shape[2] * shape[3])
    hidden = DenseHead(
        channels,
        hidden=hidden_widths(head),
        dropout=head_dropout,
        pool=head_pool,
        flat_features=flat,
        input_size=input_size,
        act=act,
        dtype=dtype,
        rngs=rngs,
    )
    setattr(model, HIDDEN, hidden)
    model.num_features = hidden.width
    model.head_drop = layers.dropout(drop_rate, rngs=rngs)
    model.head = layers.classifier(hidden.width, num_classes, dtype=dtype, rngs=rngs)


def forward(model: nnx.Module, x: jax.Array, features: dict, *, train: bool):
    """The head part of ``model.__call__``: ``(logits, features)`` with 'pre_logits' added
    (before any entries that must follow it, e.g. Inception's 'aux_logits')."""
    after = {k: features.pop(k) for k in AFTER_PRE_LOGITS if k in features}
    pre_logits, x = getattr(model, HIDDEN)(x, train=train)
    features["pre_logits"] = pre_logits
    features.update(after)
    x = model.head_drop(x, deterministic=not train)
    return model.head(x).astype(jnp.float32), features


def pooled_features(model: nnx.Module, x: jax.Array) -> jax.Array:
    """What the head's hidden layers take, in inference mode: the backbone's map pooled (or
    flattened) by the head, [B, D] in the model's compute dtype. A frozen backbone with no
    random layers maps each image to this once; `classify` on it gives the model's logits."""
    fmap, _ = model.forward_features(x, train=False)
    return getattr(model, HIDDEN).pool_map(fmap)


def classify(model: nnx.Module, pooled: jax.Array, *, train: bool) -> jax.Array:
    """The logits from `pooled_features`: the hidden layers, the model's dropout and the
    classifier, exactly the end of `forward`."""
    _, x = getattr(model, HIDDEN).dense_layers(pooled, train=train)
    x = model.head_drop(x, deterministic=not train)
    return model.head(x).astype(jnp.float32)
