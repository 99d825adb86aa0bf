"""Every name map covers the full-size reference models: names and shapes, one to one.

The parity fixtures (test_parity.py) are shrunk models; here the real depths and widths are
checked without the reference frameworks. ``fixtures/full_layouts.json.gz`` (written by
tools/make_weight_fixtures.py ``--layouts``) records ``{source: {reference model: {tensor name:
shape}}}``: timm/torchvision state dicts and ``keras.applications.<App>(weights=None)`` written
in the legacy ``.h5`` layout of the downloads, names as our reader gives them. Our model of the
same name (or Keras alias, or ``OURS``) must take every tensor, and every tensor must be taken (except those
the map deliberately ignores), shapes included.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import os

import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.weights import convert, layout, maps

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
LAYOUTS = json.load(gzip.open(os.path.join(FIXTURES, "full_layouts.json.gz"), "rt"))
# Reference models whose counterpart here has another name (as in registry_data's rows).
OURS = {
    ("torchvision", "mobilenet_v2"): "mobilenetv2_100",
    ("torchvision", "efficientnet_v2_s"): "tf_efficientnetv2_s",
}


@pytest.mark.parametrize(
    "source, name", [(s, n) for s in sorted(LAYOUTS) for n in sorted(LAYOUTS[s])]
)
def test_map_is_one_to_one_at_full_size(source, name):
    ours = OURS.get((source, name), name)
    model = nnx.eval_shape(lambda: models.create(ours, num_classes=1000, rngs=nnx.Rngs(0)))
    target = convert.model_targets(model)
    zero = np.zeros((), np.float32)  # Zero-stride views: shapes without memory.
    weights = {n: np.broadcast_to(zero, s) for n, s in LAYOUTS[source][name].items()}
    if source == "keras":  # As load_weights_into names them (one Keras naming).
        weights = layout.keras_names(weights)
    weights = maps.canonical_names(source, ours, weights)
    name_map, ignore = maps.build(source, ours, target)
    assert set(name_map) == set(target)
    sources = [src for src, _ in name_map.values()]
    assert len(set(sources)) == len(sources), "two parameters from one tensor"
    for path, (src, rule) in name_map.items():
        assert src in weights, f"{path} <- {src}: not in the {source} {name} layout"
        assert layout.apply_rule(rule, weights[src]).shape == target[path].shape, (path, src)
    unused = set(weights) - set(sources)
    patterns = (*ignore, *layout.ALWAYS_IGNORED)
    assert all(any(fnmatch.fnmatch(n, p) for p in patterns) for n in unused), sorted(unused)[:5]
