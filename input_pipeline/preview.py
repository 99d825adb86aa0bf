"""A grid of raw vs processed images: what a pipeline string does to a dataset (the library half of
``tools/preview.py``).

``n`` examples are drawn at random (seeded) from a dataset; each is shown as decoded (``decode``
only) next to the output of the pipeline, with its class, sizes and value range. Random ops
(augmentations) draw from a per-example generator seeded by ``seed``, so a preview is reproducible.
Float outputs (after ``value_range`` or ``normalize``) are stretched to their own min..max for
display; the title gives the real range. Plots use matplotlib directly (input_pipeline does not
import jaxcls).
"""

from __future__ import annotations

import math
import os

import numpy as np

from input_pipeline import catalogue_report, decode, pp, sources

PAIRS_PER_ROW = 4


def preview(
    data: str, pipeline: str, out: str, *, n: int = 16, seed: int = 0, class_map=None
) -> dict:
    """Writes the raw-vs-processed grid of ``n`` examples of ``data`` to ``out`` (PNG).

    Args:
      data: a class-per-folder directory, or a dataset spec (``'folder:...'``, ``'csv:...'``,
        ``'tfds:...'``, ``'digits'``).
      pipeline: the pipeline string to preview; it must start with ``decode``.
      out: the PNG file to write (atomically).
      n, seed: how many examples, and the seed of their choice and of random ops.
      class_map: renames folder classes (folder datasets), as ``config.data.class_map``.

    Returns:
      ``{'examples': [(key, class name), ...], 'shapes': [processed shape, ...], 'out': out}``.

    Raises:
      ValueError (`sources.SourceError` included): a missing dataset, a bad pipeline string.
    """
    prep = pp.parse(pipeline)
    if not prep.ops[0].text.startswith("decode"):
        raise ValueError(f"pipeline {pipeline!r} must start with decode (it gets the file bytes)")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    source = _source(data, class_map)
    if len(source) == 0:
        raise ValueError(f"dataset {data!r} has no images")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(source), size=min(n, len(source)), replace=False))
    raw_decode = pp.parse("decode")
    tiles = []
    for i, index in enumerate(picks.tolist()):
        key = source.keys[index]
        name = source.class_names[int(source.labels[index])]
        try:
            encoded = source.load(key)
            raw = raw_decode(encoded)
            processed = np.asarray(prep(encoded, np.random.default_rng([seed, i])))
        except decode.DecodeError as e:
            raw, processed = None, e.reason
        tiles.append((key, name, raw, processed))
    _draw(tiles, pipeline, out)
    return {
        "examples": [(key, name) for key, name, _, _ in tiles],
        "shapes": [getattr(p, "shape", None) for *_, p in tiles],
        "out": out,
    }


def _source(data: str, class_map) -> sources.Source:
    if os.path.isdir(data):
        return sources.FolderSource(data, class_map=class_map)
    kind = data.partition(":")[0]
    if kind in ("folder", "csv", "tfds", "digits"):
        config = {
            "class_map": class_map,
            "tfds_data_dir": "",
            "tfds_image_key": "image",
            "tfds_label_key": "label",
        }
        return sources.make_source(data, config)
    raise sources.SourceError(
        f"dataset folder does not exist: {data} (give a folder, or a spec such as "
        "'folder:DIR', 'csv:FILE', 'tfds:NAME', 'digits')"
    )


def _display(image: np.ndarray) -> tuple[np.ndarray, str]:
    """An image matplotlib can show, and a note on its value range."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image, "uint8"
    lo, hi = float(image.min()), float(image.max())
    note = f"{image.dtype} [{lo:.2f}, {hi:.2f}]"
    if 0.0 <= lo and hi <= 1.0:
        return image, note
    return (image - lo) / max(hi - lo, 1e-12), note + " (stretched)"


def _draw(tiles: list, pipeline: str, out: str) -> None:
    plt = catalogue_report._pyplot()
    cols = 2 * min(PAIRS_PER_ROW, len(tiles))
    rows = math.ceil(len(tiles) / PAIRS_PER_ROW)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (_, name, raw, processed) in enumerate(tiles):
        ax_raw, ax_out = (
            axes[i // PAIRS_PER_ROW, 2 * (i % PAIRS_PER_ROW)],
            axes[i // PAIRS_PER_ROW, 2 * (i % PAIRS_PER_ROW) + 1],
        )
        if raw is None:
            ax_raw.text(
                0.5,
                0.5,
                f"{name}\ncannot decode:\n{processed}",
                ha="center",
                va="center",
                fontsize=7,
                wrap=True,
            )
            continue
        ax_raw.imshow(_display(raw)[0], cmap="gray")
        ax_raw.set_title(f"{name}\nraw {raw.shape[1]}x{raw.shape[0]}", fontsize=7)
        shown, note = _display(processed)
        ax_out.imshow(shown, cmap="gray")
        ax_out.set_title(f"processed {processed.shape[1]}x{processed.shape[0]}\n{note}", fontsize=7)
    fig.suptitle(pipeline, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp.{os.getpid()}"
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
