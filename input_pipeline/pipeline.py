"""Builds the data of a run from its config: source -> splits -> grain train/eval datasets.

The trainer calls, in order:

    data = build_data(config, workdir)            # list, scan, split (or re-read splits)
    ds = train_dataset(data, config, batch_size=per_host_batch, seed=config.seed,
                       shard_index=jax.process_index(), shard_count=jax.process_count())
    it = iter(ds)                                 # save it with grain.checkpoint.CheckpointSave
    for batch in eval_batches(data, 'val', config, batch_size=...): ...

Config fields read (their defaults are in jaxcls/config_base.py):

    config.dataset                'digits' | 'folder:/dir' | 'csv:/file.csv' | 'tfds:name' |
                                  'array_record:/dir'
    config.data.image_size        int or (h, w): what the model sees
    config.data.split             train/val/test fractions, or 'source' (the dataset's own)
    config.data.split_seed        seed of the split, the subsamples and rebalance
    config.data.val_fraction      split='source' without a val split: carved from train
    config.data.train_fraction    stratified subsample of the train split
    config.data.max_per_class     cap per class on every split (0 = all)
    config.data.train_pipeline    '' -> 'decode|resize(S)|flip_lr|value_range(-1, 1)'
                                        (no flip_lr for digits: mirrored digits change meaning)
    config.data.eval_pipeline     '' -> 'decode|resize(S)|value_range(-1, 1)'
    config.data.num_workers       grain worker processes for training (0 = in this process)
    config.data.num_threads       reader threads (per process) for decoding
    config.data.prefetch          batches buffered ahead (per worker)
    config.data.max_bad_fraction  abort when more files than this fraction do not decode
    config.data.scan              decode every file of a folder/csv source once to find bad
                                        files (only when the splits are first made)
    config.data.class_map         'animals10' or a {folder: name} dict (folder sources)
    config.data.rebalance         'none' | 'down' | 'up' | 'mean' (train split only)
    config.data.class_weights     True -> Data.class_weights ('balanced' weights)
    config.data.mixup, .cutmix    Beta(alpha, alpha) batch mixing; adds 'label_onehot'
    config.data.mix_prob          fraction of batches mixed; .mix_switch_prob: cutmix vs mixup
    config.data.tfds_*            tfds sources: data_dir, image_key, label_key

Batches are dicts of numpy arrays: 'image' float32 [B, H, W, 3], 'label' int32 [B], 'id' int32 [B]
(the example's row in its split manifest, for auditing which examples a step saw), plus
'label_onehot' float32 [B, K] when mixup or cutmix is on and 'mask' float32 [B] for eval batches.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator

import grain
import numpy as np
from etils import epath

from input_pipeline import catalogue, mixing, pp, sources, splits
from input_pipeline.decode import DecodeError
from input_pipeline.splits import Manifest
from jaxcls.native import malloc

__all__ = [
    "Data",
    "Manifest",
    "build_data",
    "train_dataset",
    "eval_batches",
    "steps_per_epoch",
    "eval_transform",
]


@dataclasses.dataclass
class Data:
    """Everything the trainer needs to know about the data of a run."""

    class_names: list[str]
    manifests: dict[str, Manifest]  # 'train', 'val', 'test'
    image_size: tuple[int, int]  # (H, W) the model sees
    train_pipeline: str  # preprocessing strings actually used
    eval_pipeline: str
    source_spec: str  # e.g. 'digits', 'folder:/path'
    skipped: list[dict]  # bad files: {'key':..., 'path':..., 'reason':...}
    source: sources.Source | None = dataclasses.field(default=None, repr=False)
    class_weights: np.ndarray | None = None  # float32 [K] when config.data.class_weights

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_data(config, workdir: str | None) -> Data:
    """Lists the source, splits it (or re-reads the workdir's splits) and returns `Data`.

    On the first run of a workdir, folder and CSV sources are scanned for files that do not
    decode; those are listed in ``Data.skipped`` (and ``splits/skipped.csv``), left out of the
    splits, and the run aborts if they exceed ``max_bad_fraction`` of the files. The splits are
    then written to ``{workdir}/splits/{train,val,test}.csv``, and the examples subsampling left
    out (`splits.make_splits`) to ``splits/unused.csv``. When these files already exist the
    run is a resume: they are read back and checked against the source, and a changed dataset
    (classes renamed, files added, removed or moved between classes) is a clear error.

    Every host of a multi-host run may call this: the split is deterministic and each file is
    written atomically, so concurrent identical writes are harmless.
    """
    cfg = config.data
    spec = config.dataset
    own = splits.parse_split(cfg.split) == splits.SOURCE_SPLIT
    source = sources.make_source(spec, cfg, own_splits=own)
    split_dir = os.path.join(workdir, "splits") if workdir else None
    paths = {s: os.path.join(split_dir, f"{s}.csv") for s in splits.SPLITS} if split_dir else {}
    unused_path = os.path.join(split_dir, "unused.csv") if split_dir else ""
    if paths and all(epath.Path(p).exists() for p in paths.values()):
        manifests = {s: splits.read_manifest(p, source.class_names) for s, p in paths.items()}
        skipped = splits.read_skipped(os.path.join(split_dir, "skipped.csv"))
        unused = []
        if epath.Path(unused_path).exists():
            unused = splits.read_manifest(unused_path, source.class_names).keys
        _check_resumed_splits(manifests, skipped, source, split_dir, unused)
    else:
        full, skipped = readable_manifest(source, cfg)
        names = [source.split_of(k) for k in full.keys] if own else None
        manifests, unused = splits.make_splits(full, cfg, names)
        if split_dir:
            splits.write_skipped(os.path.join(split_dir, "skipped.csv"), skipped)
            splits.write_manifest(unused_path, unused)
            for s in splits.SPLITS:
                splits.write_manifest(paths[s], manifests[s])
    if len(manifests["train"]) == 0:
        raise ValueError(f"the train split of {spec!r} is empty")
    manifests["train"] = splits.rebalance(manifests["train"], cfg.rebalance, int(cfg.split_seed))

    image_size = pp.size_hw(cfg.image_size)
    train_pp, eval_pp = default_pipelines(image_size, spec)
    if config.finetune.get("cache_features", False):
        # A cached-feature probe sees each image once, so by default exactly as evaluation does
        # (the default train pipeline only adds a random flip).
        train_pp = eval_pp
    train_pp = cfg.train_pipeline or train_pp
    eval_pp = cfg.eval_pipeline or eval_pp
    pp.parse(train_pp)  # Fail now, not in a worker process, on a typo.
    random_ops = pp.parse(eval_pp).random_ops
    if random_ops:
        raise ValueError(
            f"eval_pipeline {eval_pp!r} contains random ops {random_ops}; evaluation must be fixed"
        )
    weights = splits.class_weights(manifests["train"]) if cfg.class_weights else None
    return Data(
        class_names=list(source.class_names),
        manifests=manifests,
        image_size=image_size,
        train_pipeline=train_pp,
        eval_pipeline=eval_pp,
        source_spec=spec,
        skipped=skipped,
        source=source,
        class_weights=weights,
    )


def readable_manifest(source: sources.Source, cfg) -> tuple[Manifest, list[dict]]:
    """Every example of ``source`` that decodes, and the bad files left out.

    ``cfg`` is ``config.data``. File sources are scanned once (``cfg.scan``, with
    ``cfg.num_threads`` readers); more than ``cfg.max_bad_fraction`` bad files is an error naming
    the first ones.
    """
    skipped = []
    if source.is_file_based and cfg.scan:
        skipped = catalogue.scan_bad_files(source, num_threads=cfg.num_threads)
    _check_bad_fraction(skipped, len(source), cfg.max_bad_fraction)
    bad = {s["key"] for s in skipped}
    keep = [i for i, k in enumerate(source.keys) if k not in bad]
    full = Manifest(source.keys, source.labels, source.class_names, source.key_column)
    return full.subset(keep), skipped


def default_pipelines(image_size: tuple[int, int], spec: str = "") -> tuple[str, str]:
    """The default (train, eval) preprocessing strings for an image size. JPEGs of at least twice
    the size decode at a reduced DCT scale (``decode(draft=...)``) before the resize."""
    h, w = image_size
    size = f"{h}" if h == w else f"({h}, {w})"
    flip = "" if spec == "digits" else "|flip_lr"
    decode = f"decode(draft={max(h, w)})"
    return (
        f"{decode}|resize({size}){flip}|value_range(-1, 1)",
        f"{decode}|resize({size})|value_range(-1, 1)",
    )


def steps_per_epoch(data: Data, global_batch_size: int) -> int:
    """Training steps in one pass over the train split (remainder dropped), at least 1."""
    return max(1, len(data.manifests["train"]) // int(global_batch_size))


class ManifestDataSource:
    """grain random-access source over one split: example i is ``manifest.keys[i]``'s raw data.

    Its repr carries a hash of the manifest, so states restored onto a different file list are
    detected (see `_GuardedIterDataset`).
    """

    def __init__(self, source: sources.Source, manifest: Manifest):
        self.source = source
        self.manifest = manifest
        self._repr = (
            f"ManifestDataSource(spec={source.spec!r}, n={len(manifest)}, "
            f"sha={sources.manifest_hash(manifest.keys, manifest.labels, manifest.class_names)})"
        )

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        key = self.manifest.keys[index]
        try:
            raw = self.source.load(key)
        except DecodeError as e:
            raise DecodeError(e.reason, self.source.describe(key)) from None
        return {"image": raw, "label": int(self.manifest.labels[index]), "id": index, "key": key}

    def __repr__(self) -> str:
        return self._repr


class FeatureSource:
    """grain random-access source over cached features of one split: example i is row i (the
    manifest's order), with its label and id. Its repr names the manifest it was computed from."""

    def __init__(self, features: np.ndarray, manifest_source: ManifestDataSource):
        if len(features) != len(manifest_source):
            raise ValueError(
                f"{len(features)} cached feature rows for {len(manifest_source)} examples"
            )
        self.features = features
        self.labels = np.asarray(manifest_source.manifest.labels, np.int32)
        self._repr = f"FeatureSource(dim={features.shape[1:]}, of={manifest_source!r})"

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {
            "features": self.features[index],
            "label": self.labels[index],
            "id": np.int32(index),
        }

    def __repr__(self) -> str:
        return self._repr


class _Example:
    """Decodes and preprocesses one record; names the file in any error. Picklable for workers.

    ``reuse_memory`` (config.reuse_memory) keeps freed buffers in the process that runs it
    (`jaxcls.native.malloc.reuse_freed_memory`), the main process or a grain worker."""

    def __init__(
        self,
        pipeline: str,
        image_size: tuple[int, int],
        source: sources.Source,
        reuse_memory: bool = False,
    ):
        self.pipeline = pipeline
        self.preprocess = pp.parse(pipeline)
        self.shape = (*image_size, 3)
        self.source = source
        self.reuse_memory = bool(reuse_memory)
        if self.reuse_memory:
            malloc.reuse_freed_memory()

    def __call__(self, element: dict, rng: np.random.Generator | None = None) -> dict:
        try:
            image = self.preprocess(element["image"], rng)
        except DecodeError as e:
            raise DecodeError(e.reason, self.source.describe(element["key"])) from None
        image = np.asarray(image, dtype=np.float32)
        if image.shape != self.shape:
            raise ValueError(
                f"pipeline {self.pipeline!r} produced an image of shape {image.shape}, expected "
                f"{self.shape} (config.data.image_size); end the pipeline with a resize or crop"
            )
        return {
            "image": image,
            "label": np.int32(element["label"]),
            "id": np.int32(element["id"]),
        }

    def __getstate__(self):  # Ops hold closures: ship the string and re-parse in the worker.
        return {
            "pipeline": self.pipeline,
            "shape": self.shape,
            "source": self.source,
            "reuse_memory": self.reuse_memory,
        }

    def __setstate__(self, state):
        self.pipeline, self.shape, self.source = state["pipeline"], state["shape"], state["source"]
        self.preprocess = pp.parse(self.pipeline)
        self.reuse_memory = state["reuse_memory"]
        if self.reuse_memory:  # A worker process (spawned): its own malloc.
            malloc.reuse_freed_memory()


def eval_transform(pipeline: str, image_size) -> Callable[[bytes | np.ndarray], np.ndarray]:
    """The evaluation preprocessing as a plain function, for predict tools and the web app.

    Given the ``eval_pipeline`` string and ``image_size`` saved with a checkpoint, returns
    ``fn(raw) -> float32 [H, W, 3]`` where ``raw`` is encoded file bytes or a decoded array:
    exactly what `eval_batches` feeds the model. Raises `DecodeError` for a bad image.
    """
    example = _Example(pipeline, pp.size_hw(image_size), sources.DirectInput())
    if example.preprocess.is_random:
        raise ValueError(f"eval pipeline {pipeline!r} contains random ops")

    def fn(raw):
        return example({"image": raw, "label": 0, "id": 0, "key": "<input>"})["image"]

    return fn


def train_dataset(
    data: Data,
    config,
    *,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    features: np.ndarray | None = None,
) -> grain.IterDataset:
    """The infinite, per-epoch reshuffled training stream of this host's batches.

    Graph: source -> shuffle -> random_map(decode + ops) -> slice(this host's share) ->
    batch(drop_remainder) -> repeat -> [mixup/cutmix] -> to_iter_dataset -> mp_prefetch.
    Shuffling and augmentation happen before sharding, on global indices, so every host sees a
    different part of the same global permutation and the augmentation of an example does not
    depend on the host count. Repeat comes after batch, so every epoch is exactly
    ``steps_per_epoch`` batches and reshuffles (grain folds the epoch into every seed).

    Every host gets ``len(train) // shard_count`` examples per epoch (the global remainder is
    dropped), so all hosts run the same number of steps.

    With ``features`` (one row per train example, in manifest order: a cached-feature probe) the
    batches carry ``'features'`` instead of ``'image'``, in the very order the image stream would
    have (same shuffle, slice and batching); there is nothing to decode, so no worker processes.
    """
    manifest = data.manifests["train"]
    per_shard = _examples_per_shard(len(manifest), batch_size, shard_index, shard_count)
    mixer = mixing.from_config(config.data, data.num_classes)
    if features is None:
        source = ManifestDataSource(data.source, manifest)
    else:
        source = FeatureSource(features, ManifestDataSource(data.source, manifest))
        if mixer is not None:
            raise ValueError("cached features cannot be mixed (mixup/cutmix mix images)")
    ds = grain.MapDataset.source(source).seed(int(seed) % 2**32)
    ds = ds.shuffle()
    if features is None:
        ds = ds.random_map(
            _Example(data.train_pipeline, data.image_size, data.source, config.reuse_memory)
        )
    ds = ds.slice(slice(shard_index, per_shard * shard_count, shard_count))
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.repeat(None)
    if mixer is not None:
        ds = ds.random_map(mixer)
    meta = {
        "source": repr(source),
        "num_workers": int(config.data.num_workers),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "shard": f"{shard_index}/{shard_count}",
        "pipeline": data.train_pipeline,
        "mixing": repr(mixer),
    }
    workers = 0 if features is not None else int(config.data.num_workers)
    meta["num_workers"] = workers
    return _GuardedIterDataset(_train_iter_dataset(ds, config.data, workers), meta)


def _examples_per_shard(n: int, batch_size: int, shard_index: int, shard_count: int) -> int:
    """Training examples each host gets per epoch (``n // shard_count``); checks the shard index
    and that a host has at least one batch."""
    per_shard = n // shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    if per_shard < batch_size:
        raise ValueError(
            f"train split has {n} examples: {per_shard} per host is fewer than the "
            f"per-host batch size {batch_size}"
        )
    return per_shard


def _train_iter_dataset(ds: grain.MapDataset, cfg, num_workers: int) -> grain.IterDataset:
    """The batched training ``ds`` read by ``cfg.num_threads`` threads, ``cfg.prefetch`` batches
    ahead, in ``num_workers`` worker processes when that is > 0 (``cfg`` is config.data)."""
    prefetch = max(1, int(cfg.prefetch))
    ids = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=int(cfg.num_threads), prefetch_buffer_size=prefetch)
    )
    if num_workers > 0:
        _ensure_flags_parsed()
        ids = ids.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        )
    return ids


def _ensure_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside ``app.run`` (tests, notebooks) nothing has
    parsed them and grain raises UnparsedFlagAccessError. Use the defaults in that case."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class _GuardedIterDataset(grain.IterDataset):
    """Adds the pipeline's identity to the iterator state and refuses a mismatched restore.

    Grain's dataset iterators store only positions: restoring one onto a different file list,
    worker count, batch size or seed would silently produce other batches. The state saved here
    is ``{'pipeline': meta, 'iterator': grain_state}``; `set_state` compares ``meta`` first.
    """

    def __init__(self, parent: grain.IterDataset, meta: dict):
        super().__init__(parent)
        self._meta = meta

    def __iter__(self):
        return _GuardedIterator(self._parent.__iter__(), self._meta)

    def __str__(self) -> str:
        return f"GuardedIterDataset({self._meta['source']})"


class _GuardedIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, meta: dict):
        super().__init__(parent)
        self._meta = meta

    def __next__(self):
        return next(self._parent)

    def get_state(self) -> dict:
        return {"pipeline": dict(self._meta), "iterator": self._parent.get_state()}

    def set_state(self, state: dict) -> None:
        saved = state.get("pipeline", {}) if isinstance(state, dict) else {}
        rescaled = _same_global_batch(saved, self._meta)
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r} vs now {v!r}"
            for k, v in self._meta.items()
            if saved.get(k) != v and not (rescaled and k in ("shard", "batch_size"))
        ]
        if diffs or "iterator" not in state:
            raise ValueError(
                "cannot restore the data iterator: the input pipeline differs from the one "
                "that was checkpointed (" + "; ".join(diffs or ["no pipeline identity"]) + ")"
            )
        self._parent.set_state(state["iterator"])


def _same_global_batch(saved: dict, now: dict) -> bool:
    """Whether a state saved with another host count (``shard`` 'i/n') has the same global batch
    (per-host batch x hosts). Then it holds for any host: `train_dataset` slices one global
    permutation, so batch k of every host count covers the same global positions, and the
    iterator's position (in batches, per worker) carries over unchanged."""
    try:
        count_saved = int(str(saved["shard"]).split("/")[1])
        count_now = int(str(now["shard"]).split("/")[1])
        return int(saved["batch_size"]) * count_saved == int(now["batch_size"]) * count_now
    except (KeyError, IndexError, ValueError):
        return False


def eval_batches(
    data: Data,
    split: str,
    config,
    *,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    pipeline: str | None = None,
) -> Iterator[dict]:
    """Yields every example of ``split`` exactly once (this host's share), in manifest order.

    Host ``i`` takes examples ``i, i + shard_count, ...``. Batches are padded to ``batch_size``
    with zeros and carry ``'mask'`` float32 [B] (1 real, 0 padding). Every host yields the same
    number of batches, ``ceil(ceil(n / shard_count) / batch_size)``, so collective eval steps
    line up across hosts. ``pipeline`` (a fixed one) replaces ``data.eval_pipeline``.
    """
    if split not in data.manifests:
        raise KeyError(f"unknown split {split!r}; have {sorted(data.manifests)}")
    cfg = config.data
    manifest = data.manifests[split]
    num_batches = eval_batch_count(len(manifest), batch_size, shard_count)
    if num_batches == 0:
        return
    source = ManifestDataSource(data.source, manifest)
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    ds = ds.map(
        _Example(pipeline or data.eval_pipeline, data.image_size, data.source, config.reuse_memory)
    )
    ds = ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=int(cfg.num_threads),
            prefetch_buffer_size=max(1, int(cfg.prefetch)) * batch_size,
        )
    ).batch(batch_size, drop_remainder=False)
    h, w = data.image_size
    yield from _padded(iter(ds), num_batches, batch_size, {"image": ((h, w, 3), np.float32)})


def eval_batch_count(n: int, batch_size: int, shard_count: int) -> int:
    """Batches every host yields for a split of ``n`` examples (`eval_batches`, `array_batches`):
    the largest host share, ``ceil(n / shard_count)``, in batches of ``batch_size``."""
    return math.ceil(math.ceil(n / shard_count) / batch_size)


def array_batches(
    arrays: dict[str, np.ndarray],
    *,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
) -> Iterator[dict]:
    """`eval_batches` over in-memory rows (e.g. cached features, with 'label'): the same host
    shares, padding and ``'mask'``, and ``'id'`` the row index."""
    n = len(arrays["label"])
    num_batches = eval_batch_count(n, batch_size, shard_count)
    rows = np.arange(n)[shard_index::shard_count]
    batches = (
        {
            **{k: v[rows[i : i + batch_size]] for k, v in arrays.items()},
            "id": rows[i : i + batch_size],
        }
        for i in range(0, len(rows), batch_size)
    )
    shapes = {k: (v.shape[1:], v.dtype) for k, v in arrays.items() if k != "label"}
    yield from _padded(batches, num_batches, batch_size, shapes)


def _padded(batches: Iterator[dict], num_batches: int, batch_size: int, shapes: dict):
    """``num_batches`` batches of exactly ``batch_size`` rows: ``shapes`` ({key: (row shape,
    dtype)}) plus 'label' and 'id', zero-padded, with 'mask' 1 on real rows."""
    for _ in range(num_batches):
        batch = next(batches, None)
        n = 0 if batch is None else len(batch["label"])
        padded = {k: np.zeros((batch_size, *shape), dtype) for k, (shape, dtype) in shapes.items()}
        padded["label"] = np.zeros((batch_size,), np.int32)
        padded["id"] = np.zeros((batch_size,), np.int32)
        padded["mask"] = np.zeros((batch_size,), np.float32)
        if n:
            for k in (*shapes, "label", "id"):
                padded[k][:n] = batch[k]
            padded["mask"][:n] = 1.0
        yield padded


def _check_bad_fraction(skipped: list[dict], total: int, max_fraction: float) -> None:
    if total and len(skipped) / total > max_fraction:
        listing = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:5])
        raise ValueError(
            f"{len(skipped)} of {total} files ({len(skipped) / total:.1%}) do not decode, more "
            f"than config.data.max_bad_fraction={max_fraction}. First ones: {listing}"
        )


def _check_resumed_splits(manifests, skipped, source, split_dir, unused=()) -> None:
    """The splits read from a workdir must cover exactly the source's files, with their labels
    (bad files and the examples subsampling left out, ``unused``, apart)."""
    listed = dict(zip(source.keys, source.labels.tolist()))
    seen = {}
    for name, m in manifests.items():
        for key, label in zip(m.keys, m.labels.tolist()):
            seen[key] = label
            if key not in listed:
                raise ValueError(
                    f"{split_dir}/{name}.csv lists {key!r}, which the dataset "
                    f"{source.spec!r} no longer has; the dataset changed since the splits were "
                    "written (use a new workdir or delete its splits/ folder)"
                )
            if listed[key] != label:
                raise ValueError(
                    f"{key!r} is class {source.class_names[listed[key]]!r} in {source.spec!r} "
                    f"but {source.class_names[label]!r} in {split_dir}/{name}.csv; the dataset "
                    "changed since the splits were written"
                )
    bad = {s["key"] for s in skipped} | set(unused)
    new = [k for k in source.keys if k not in seen and k not in bad]
    if new:
        raise ValueError(
            f"{source.spec!r} has {len(new)} example(s) not in the splits of {split_dir} "
            f"(e.g. {new[:3]}); the dataset changed since the splits were written "
            "(use a new workdir or delete its splits/ folder)"
        )
