"""Where a run's weights start: fresh, a pretrained tag or file, or a jaxcls checkpoint.

``config.init``:

- ``pretrained``: a tag of jaxcls.weights.registry (e.g. ``timm:efficientnet_b0.ra_in1k``,
  ``efficientnet_pytorch:efficientnet-lite0``). It fixes the model (``config.model.name`` may be
  left empty or must name the same model), the origin's model conventions (TF 'SAME' padding, BN
  eps), and — unless the config sets them — the preprocessing (the origin's eval contract; the
  default train pipeline with the origin's normalisation).
- ``path``: a local weight file (.safetensors/.pth/.h5), with ``source`` naming its layout
  (timm | torchvision | keras | efficientnet_pytorch); checked against the tag's hash when both
  are given. Offline runs use this.
- ``checkpoint``: a jaxcls checkpoint (a training workdir, a ``tools/convert_weights.py`` output,
  or one step directory): its parameters and BatchNorm statistics, by name.

In every case the classifier is re-initialised when its shape differs (a new head for another
number of classes) and everything else must match exactly; the head's hidden layers
(``config.model.head``) are never in pretrained weights and stay freshly initialised.
"""

from __future__ import annotations

import os
import re

import ml_collections
import numpy as np
from flax import nnx

from input_pipeline import pipeline
from jaxcls import models
from jaxcls.models.registry import HEAD, HEAD_PARTS
from jaxcls.trainer import checkpoint as ckpt_lib
from jaxcls.weights import assign


def _tag(config: ml_collections.ConfigDict):
    if not config.init.pretrained:
        return None
    from jaxcls.weights import registry

    return registry.get(config.init.pretrained)


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with what a pretrained tag implies filled in (model, pipelines)."""
    tag = _tag(config)
    if tag is None:
        return config
    config = config.copy_and_resolve_references()
    config.unlock()
    wanted = config.model.name
    if wanted and models.model_info(wanted).name != models.model_info(tag.model).name:
        raise ValueError(
            f"config.model.name={wanted!r} but pretrained tag {tag.tag} is for {tag.model!r}; "
            "leave model.name empty or name the same model"
        )
    config.model.name = tag.model
    for key, value in tag.model_kwargs.items():
        if key not in config.model or config.model[key] is None:  # None: the model's default
            config.model[key] = value
    size = tuple(np.broadcast_to(config.data.image_size, 2).tolist())
    eval_pipeline = tag.preprocessing.eval_pipeline(size[0])
    if not config.data.eval_pipeline:
        config.data.eval_pipeline = eval_pipeline
    if not config.data.train_pipeline:
        # The same geometry and normalisation as evaluation, plus the default flip (none for
        # digits, where a mirrored digit is another symbol): train and test images then match.
        train_default, _ = pipeline.default_pipelines(size, config.dataset)
        flip = "|flip_lr" if "flip_lr" in train_default else ""
        config.data.train_pipeline = re.sub(
            r"\|(normalize\()", flip + r"|\1", eval_pipeline, count=1
        )
    config.lock()
    return config


def initialise(
    model: nnx.Module, config: ml_collections.ConfigDict, num_classes: int
) -> dict | None:
    """Loads the weights ``config.init`` names into ``model`` in place; returns a record of what
    was loaded (for the checkpoint meta and results), or None for a fresh start."""
    init = config.init
    if init.checkpoint:
        return load_checkpoint(model, init.checkpoint)
    if not (init.pretrained or init.path):
        return None
    from jaxcls.weights import convert, registry

    path, tag = registry.resolve_init(init.pretrained, init.path)
    source = init.source or (tag.source if tag else "")
    if not source:
        raise ValueError(
            "config.init.path needs config.init.source (timm, torchvision, keras or "
            "efficientnet_pytorch) when no pretrained tag is given"
        )
    name = models.model_info(config.model.name).name
    skip_head = num_classes != (tag.num_classes if tag else -1)
    if tag is None:
        head = nnx.state(model, nnx.Param)[HEAD]["kernel"][...].shape
        weights = convert.read_weights(path)
        skip_head = not convert.head_matches(weights, head)
        report = convert.load_weights_into(
            model, name, source, weights, skip_head=skip_head, path=path
        )
    else:
        report = convert.load_pretrained(model, name, source, path, skip_head=skip_head)
    return {
        "tag": tag.tag if tag else None,
        "path": path,
        "source": source,
        "tensors": len(report.matched),
        "values": report.num_params,
        "new_head": skip_head,
        "summary": report.summary(),
    }


def load_checkpoint(model: nnx.Module, path: str) -> dict:
    """Loads parameters and BatchNorm statistics of a jaxcls checkpoint into ``model`` by name.

    ``path`` is a training workdir, its checkpoints folder, a store or one step (its best step
    when there is a best store; see `checkpoint.find_step_dir`). Reads both layouts: the
    trainer's (``params`` / ``rest``) and tools/convert_weights.py's (``params`` /
    ``batch_stats``). The classifier is kept fresh when its shape differs.
    """
    step_dir = ckpt_lib.find_step_dir(path)
    saved = ckpt_lib.read_state(step_dir)
    values = assign.flatten(saved["params"])
    values.update(assign.flatten(saved.get("rest", saved.get("batch_stats", {}))))
    state_dir = os.path.join(step_dir, ckpt_lib.STATE)
    done = assign.assign(
        model,
        values,
        what=f"the weights of checkpoint {state_dir}",
        fresh_ok=HEAD_PARTS,
        error=ValueError,
    )
    return {
        "checkpoint": state_dir,
        "tensors": done.tensors,
        "values": done.values,
        "new_head": bool(done.fresh),
    }
