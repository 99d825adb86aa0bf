"""TensorFlow Datasets source: a prepared tfds dataset read through ``tfds.data_source``.

``tfds.data_source`` gives random access to ArrayRecord files without TensorFlow (preparing a
dataset needs TensorFlow once; reading it does not). We ask tfds *not* to decode the image
feature (``SkipDecoding``) so images reach the pipeline as their encoded bytes and go through
our own `decode.decode_image`, exactly like files on disk -- one decoder for every source.

All of the dataset's tfds splits are pooled and re-split by `splits.stratified_split` like any
other source (keys are ``'<tfds split>:<index>'``), so every dataset gets the same seeded,
audited train/val/test CSVs; with ``config.data.split='source'`` tfds's own splits are kept
instead (`split_of`). The dataset must be prepared with ``file_format='array_record'``.
"""

from __future__ import annotations

import numpy as np

from input_pipeline.sources.base import Source, SourceError


class TfdsSource(Source):
    """Examples of a prepared tfds dataset; ``config.data.tfds_data_dir`` says where it lives.

    Args:
      name: the tfds name, optionally with config and version (``'cifar10'``,
        ``'cifar10:3.0.2'``).
      data_dir: the tfds data directory (None: tfds's default, ``~/tensorflow_datasets``).
      image_key, label_key: feature names (tfds image-classification datasets use these).
    """

    key_column = "record"

    def __init__(
        self,
        name: str,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ):
        self.name = name
        self.data_dir = data_dir
        self.image_key = image_key
        self.label_key = label_key
        self.spec = f"tfds:{name}"
        self._sources = None
        info = self._builder().info
        if label_key not in info.features or image_key not in info.features:
            raise SourceError(
                f"tfds dataset {name!r} has features {list(info.features)}; expected "
                f"{image_key!r} and {label_key!r}"
            )
        self.class_names = list(info.features[label_key].names)
        keys, labels = [], []
        for split, ds in self._data_sources().items():
            n = len(ds)
            keys += [f"{split}:{i}" for i in range(n)]
            for start in range(0, n, 1024):
                records = ds.__getitems__(list(range(start, min(n, start + 1024))))
                labels += [int(r[label_key]) for r in records]
        if not keys:
            raise SourceError(f"tfds dataset {name!r} has no examples")
        self.keys = keys
        self.labels = np.asarray(labels, dtype=np.int64)

    def _builder(self):
        import tensorflow_datasets as tfds

        try:
            return tfds.builder(self.name, data_dir=self.data_dir)
        except Exception as e:  # noqa: BLE001 -- tfds raises many types; name the dataset.
            raise SourceError(
                f"cannot open tfds dataset {self.name!r} in {self.data_dir or 'the default dir'}: "
                f"{e}"
            ) from None

    def _data_sources(self) -> dict:
        if self._sources is None:
            import tensorflow_datasets as tfds

            try:
                self._sources = tfds.data_source(
                    self.name,
                    data_dir=self.data_dir,
                    download=False,
                    decoders={self.image_key: tfds.decode.SkipDecoding()},
                )
            except Exception as e:  # noqa: BLE001
                raise SourceError(
                    f"cannot read tfds dataset {self.name!r} (prepared with "
                    f"file_format='array_record' in {self.data_dir or 'the default dir'}?): {e}"
                ) from None
        return self._sources

    def split_of(self, key) -> str:
        """tfds's split of ``key``: 'train', 'test'; 'validation' (or 'valid', 'val') is 'val';
        other tfds splits keep their name and are left out by ``config.data.split='source'``."""
        split = str(key).rpartition(":")[0]
        return {"validation": "val", "valid": "val"}.get(split, split)

    def load(self, key):
        split, _, index = str(key).rpartition(":")
        return self._data_sources()[split][int(index)][self.image_key]

    def __getstate__(self):
        # ArrayRecord readers hold file handles: worker processes reopen them lazily.
        state = dict(self.__dict__)
        state["_sources"] = None
        return state
