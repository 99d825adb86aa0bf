"""Saliency maps, all by ``jax.grad``: Grad-CAM, Grad-CAM++, vanilla gradients, SmoothGrad and
integrated gradients, batched and jitted once per (model, method, batch shape).

Grad-CAM needs the gradient of a class logit with respect to an *intermediate* feature map, which
no model exposes as an input. Instead of editing every model, we trace the model's forward pass
``(params, rest, x) -> (logits, features[layer])`` to a jaxpr and evaluate that jaxpr again with a
zero perturbation ``delta`` added to the value that becomes ``features[layer]``, at the point where
it is computed, so everything downstream (the rest of the network and the logits) sees
``A + delta``. Then ``d logit / d delta`` at ``delta = 0`` is exactly ``d logit / d A``. This works
for every model that follows the contract ``logits, features = model(x, train=False)``: scratch
CNNs, ResNets, EfficientNets, pretrained backbones with new heads (frozen or not: gradients with
respect to activations do not care which parameters an optimizer would update).

References:
  Grad-CAM: Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391
  Grad-CAM++: Chattopadhyay et al. 2018, https://arxiv.org/abs/1710.11063
  Vanilla gradients: Simonyan et al. 2014, https://arxiv.org/abs/1312.6034
  SmoothGrad: Smilkov et al. 2017, https://arxiv.org/abs/1706.03825
  Integrated gradients: Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.extend import core as jex

from jaxcls.models import conv

METHODS = ("gradcam", "gradcampp", "gradients", "smoothgrad", "integrated_gradients")
CAM_METHODS = ("gradcam", "gradcampp")
_ALIASES = {
    "grad_cam": "gradcam",
    "gradcam++": "gradcampp",
    "grad_cam_pp": "gradcampp",
    "vanilla": "gradients",
    "saliency": "gradients",
    "ig": "integrated_gradients",
}
_CALL_PRIMITIVES = ("pjit", "jit", "closed_call", "core_call")
GRADIENT_PERCENTILE = 99.0  # Pixel-level maps are scaled so this percentile maps to 1.


def canonical_method(method: str) -> str:
    """'gradcam' | 'gradcampp' | 'gradients' | 'smoothgrad' | 'integrated_gradients' (or an
    alias such as 'gradcam++', 'vanilla', 'ig'); raises ValueError listing them otherwise."""
    name = _ALIASES.get(method.lower(), method.lower())
    if name not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; known: {', '.join(METHODS)}")
    return name


# ------------------------------------------------------------------- injection into a jaxpr
def _eval_injected(jaxpr: jex.Jaxpr, consts, args, target, delta) -> list:
    """Evaluates ``jaxpr`` like ``jax.core.eval_jaxpr``, adding ``delta`` to variable ``target``.

    If ``target`` is produced inside a nested ``jit`` call, that call is inlined and the
    perturbation goes where the value is computed inside it, so the call's other outputs (e.g.
    the logits, when a whole model is one jitted call) see it too.
    """
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jex.Literal) else env[v]

    def write(v, value):
        env[v] = value + delta if v is target else value

    for v, value in zip(jaxpr.constvars, consts):
        write(v, value)
    for v, value in zip(jaxpr.invars, args):
        write(v, value)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        hit = any(v is target for v in eqn.outvars)
        inner = eqn.params.get("jaxpr")
        if hit and eqn.primitive.name in _CALL_PRIMITIVES and isinstance(inner, jex.ClosedJaxpr):
            pos = next(i for i, v in enumerate(eqn.outvars) if v is target)
            outs = _eval_injected(
                inner.jaxpr, inner.consts, invals, inner.jaxpr.outvars[pos], delta
            )
            for v, value in zip(eqn.outvars, outs):
                env[v] = value  # Already perturbed inside.
            continue
        ans = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
        outs = ans if eqn.primitive.multiple_results else [ans]
        for v, value in zip(eqn.outvars, outs):
            write(v, value)
    return [read(v) for v in jaxpr.outvars]


def _forward(graphdef, params, rest, x, layer):
    model = nnx.merge(graphdef, params, rest, copy=True)
    logits, features = model(x, train=False)
    if layer is None:
        return logits.astype(jnp.float32), None
    if layer not in features:
        raise ValueError(f"the model has no feature {layer!r}; it has {sorted(features)}")
    return logits.astype(jnp.float32), features[layer]


def _pick(logits: jax.Array, classes: jax.Array) -> jax.Array:
    """The explained class of each example: ``classes[b]``, or the prediction where it is < 0."""
    predicted = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
    return jnp.where(classes >= 0, classes, predicted)


def feature_gradients(graphdef, params, rest, x, classes, layer: str):
    """``(logits, A, dlogit/dA, explained classes)`` for feature map ``A = features[layer]``.

    Examples do not interact in inference mode (BatchNorm uses running statistics), so the
    gradient of the sum of the explained logits gives every example its own gradient.
    """
    fwd = functools.partial(_forward, graphdef, layer=layer)
    closed = jax.make_jaxpr(fwd)(params, rest, x)
    flat = jax.tree.leaves((params, rest, x))
    target = closed.jaxpr.outvars[1]
    if isinstance(target, jex.Literal):
        raise ValueError(f"feature {layer!r} is a constant; it cannot be explained")
    feature_aval = target.aval

    def score(delta):
        logits, feature = _eval_injected(closed.jaxpr, closed.consts, flat, target, delta)
        chosen = _pick(logits, classes)
        s = jnp.take_along_axis(logits, chosen[:, None], axis=1).sum()
        return s, (logits, feature, chosen)

    delta = jnp.zeros(feature_aval.shape, feature_aval.dtype)
    grads, (logits, feature, chosen) = jax.grad(score, has_aux=True)(delta)
    return logits, feature, grads, chosen


def input_gradients(graphdef, params, rest, x, classes):
    """``(logits, dlogit/dx, explained classes)`` for a batch of preprocessed images ``x``."""

    def score(xx):
        logits, _ = _forward(graphdef, params, rest, xx, None)
        chosen = _pick(logits, classes)
        return jnp.take_along_axis(logits, chosen[:, None], axis=1).sum(), (logits, chosen)

    grads, (logits, chosen) = jax.grad(score, has_aux=True)(x)
    return logits, grads, chosen


# ----------------------------------------------------------------------------- the methods
def _normalise(maps: jax.Array, percentile: float = 100.0) -> jax.Array:
    """Scales each map [B, H, W] to [0, 1] by its maximum, or by a high ``percentile`` of it,
    clipping above (all-zero maps stay zero).

    Pixel-level gradient maps are dominated by a few extreme pixels; scaling by the 99th
    percentile (as the SmoothGrad paper's visualisations do) keeps the rest visible.
    """
    maps = jnp.maximum(maps, 0.0)
    if percentile < 100.0:
        flat = maps.reshape(maps.shape[0], -1)
        peak = jnp.percentile(flat, percentile, axis=1)[:, None, None]
        peak = jnp.where(peak > 0, peak, maps.max(axis=(1, 2), keepdims=True))
    else:
        peak = maps.max(axis=(1, 2), keepdims=True)
    return jnp.where(peak > 0, jnp.minimum(maps / jnp.where(peak > 0, peak, 1.0), 1.0), 0.0)


def gradcam(graphdef, params, rest, x, classes, *, layer: str, plus_plus: bool = False):
    """Grad-CAM (or Grad-CAM++) maps at the feature map's resolution, float32 [B, h, w].

    Grad-CAM weights each channel by its spatially averaged gradient; Grad-CAM++ by a weighted
    average of the positive gradients, with the closed-form weights of the paper's eq. 19 for an
    exponential of the score (which use only first-order gradients, squared and cubed).
    """
    logits, a, g, chosen = feature_gradients(graphdef, params, rest, x, classes, layer)
    if a.ndim != 4:
        raise ValueError(f"Grad-CAM needs a 4-D feature map; {layer!r} has shape {a.shape}")
    a, g = a.astype(jnp.float32), g.astype(jnp.float32)
    if plus_plus:
        g2, g3 = g**2, g**3
        denom = 2.0 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
        alpha = g2 / jnp.where(denom != 0.0, denom, 1.0)
        weights = (alpha * jax.nn.relu(g)).sum(axis=(1, 2))
    else:
        weights = g.mean(axis=(1, 2))
    cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", a, weights))
    return cam, logits, chosen


def smoothgrad(graphdef, params, rest, x, classes, key, *, samples: int, noise: float):
    """Mean input gradient over ``samples`` copies of ``x`` with Gaussian noise of standard
    deviation ``noise * (max - min)`` of each image; the class is fixed from the clean image."""
    logits, _ = _forward(graphdef, params, rest, x, None)
    chosen = _pick(logits, classes)
    spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    sigma = noise * jnp.where(spread > 0, spread, 1.0)

    def body(total, k):
        noisy = x + sigma * jax.random.normal(k, x.shape, x.dtype)
        _, g, _ = input_gradients(graphdef, params, rest, noisy, chosen)
        return total + g, None

    total, _ = jax.lax.scan(body, jnp.zeros_like(x), jax.random.split(key, samples))
    return total / samples, logits, chosen


def integrated_gradients(graphdef, params, rest, x, classes, baseline, *, steps: int):
    """Integrated gradients from ``baseline`` to ``x`` (midpoint Riemann sum, ``steps`` points).

    Returns per-pixel, per-channel attributions whose sum approximates
    ``logit(x) - logit(baseline)`` of the explained class (the completeness axiom).
    """
    logits, _ = _forward(graphdef, params, rest, x, None)
    chosen = _pick(logits, classes)
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps

    def body(total, alpha):
        _, g, _ = input_gradients(graphdef, params, rest, baseline + alpha * (x - baseline), chosen)
        return total + g, None

    total, _ = jax.lax.scan(body, jnp.zeros_like(x), alphas)
    return (x - baseline) * total / steps, logits, chosen


def _explain(graphdef, params, rest, x, classes, key, *, method, layer, samples, noise, steps):
    """One batch through one method -> dict of arrays (the function that gets jitted)."""
    h, w = x.shape[1:3]
    out = {}
    if method in CAM_METHODS:
        cam, logits, chosen = gradcam(
            graphdef, params, rest, x, classes, layer=layer, plus_plus=method == "gradcampp"
        )
        out["raw"] = cam
        up = jax.image.resize(cam, (cam.shape[0], h, w), "bilinear")
        out["maps"] = _normalise(up)
    else:
        if method == "gradients":
            logits, attr, chosen = input_gradients(graphdef, params, rest, x, classes)
        elif method == "smoothgrad":
            attr, logits, chosen = smoothgrad(
                graphdef, params, rest, x, classes, key, samples=samples, noise=noise
            )
        else:
            attr, logits, chosen = integrated_gradients(
                graphdef, params, rest, x, classes, jnp.zeros_like(x), steps=steps
            )
        attr = attr.astype(jnp.float32)
        out["raw"] = attr
        if method == "integrated_gradients":  # Signed per-pixel sums, shown by magnitude.
            out["maps"] = _normalise(jnp.abs(attr.sum(-1)), GRADIENT_PERCENTILE)
        else:  # Largest absolute gradient over the colour channels (Simonyan et al.).
            out["maps"] = _normalise(jnp.abs(attr).max(-1), GRADIENT_PERCENTILE)
    out["logits"] = logits
    out["probs"] = jax.nn.softmax(logits, axis=-1)
    out["classes"] = chosen
    return out


class Explainer:
    """Saliency maps for one model, jitted once per (method, options, batch shape).

    Args:
      graphdef, params, rest: the model split as ``nnx.split(model, nnx.Param, ...)``.
      default_layer: the feature Grad-CAM uses when none is named (``model.default_cam_layer``).

    ``explainer(images, method='gradcam', target=None, layer=None)`` takes preprocessed images
    float32 [B, H, W, 3] and returns numpy arrays: ``maps`` [B, H, W] in [0, 1] at the input
    resolution, ``raw`` (CAMs at the feature resolution, or per-channel attributions [B, H, W, 3]),
    ``logits``, ``probs`` and ``classes`` (the explained class of each image: the prediction, or
    ``target`` when given as one class for all images or one per image).
    """

    def __init__(self, graphdef, params, rest, *, default_layer: str | None = None, seed=0):
        self.graphdef, self.params, self.rest = graphdef, params, rest
        self.default_layer = default_layer
        self.key = jax.random.key(seed)
        self.traces: dict[str, int] = {}
        self._fns: dict[tuple, Any] = {}

    @classmethod
    def from_model(cls, model: nnx.Module, **kwargs) -> Explainer:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        kwargs.setdefault("default_layer", getattr(model, "default_cam_layer", None))
        return cls(graphdef, params, rest, **kwargs)

    def _fn(self, method: str, layer, samples: int, noise: float, steps: int):
        spec = (method, layer, samples, noise, steps)
        if spec not in self._fns:
            name = f"{method}:{layer}" if method in CAM_METHODS else method

            def counted(params, rest, x, classes, key):
                self.traces[name] = self.traces.get(name, 0) + 1  # At trace time only.
                return _explain(
                    self.graphdef,
                    params,
                    rest,
                    x,
                    classes,
                    key,
                    method=method,
                    layer=layer,
                    samples=samples,
                    noise=noise,
                    steps=steps,
                )

            self._fns[spec] = jax.jit(counted, compiler_options=conv.compiler_options())
        return self._fns[spec]

    def __call__(
        self,
        images,
        method: str = "gradcam",
        target=None,
        layer: str | None = None,
        *,
        samples: int = 25,
        noise: float = 0.15,
        steps: int = 32,
    ) -> dict[str, np.ndarray]:
        method = canonical_method(method)
        x = jnp.asarray(images, jnp.float32)
        if x.ndim != 4:
            raise ValueError(f"expected images [B, H, W, C], got shape {x.shape}")
        if method in CAM_METHODS:
            layer = layer or self.default_layer
            if not layer:
                raise ValueError("no feature named for Grad-CAM and the model has no default")
        else:
            layer = None
        b = x.shape[0]
        if target is None:
            classes = np.full((b,), -1, np.int32)
        else:
            classes = np.broadcast_to(np.asarray(target, np.int32), (b,)).copy()
        self.key, key = jax.random.split(self.key)
        fn = self._fn(method, layer, int(samples), float(noise), int(steps))
        out = fn(self.params, self.rest, x, jnp.asarray(classes), key)
        return {k: np.asarray(v) for k, v in jax.device_get(out).items()}
