"""A small class-per-folder dataset with the odd and broken files real downloads contain."""

import io
import os

import numpy as np
from PIL import Image

# Each class is a colour; the odd-format files keep their class's colour so they stay learnable.
CLASSES = {"cane": (200, 40, 40), "gatto": (40, 180, 60), "ragno": (40, 60, 210)}
BAD = {  # relative path -> status the catalogue must report
    "cane/empty.jpg": "empty",
    "gatto/truncated.jpg": "truncated",
    "ragno/notes.jpg": "not an image",
}


def _image(colour, seed, hw=(40, 56)):
    rng = np.random.default_rng(seed)
    a = np.empty((*hw, 3), np.int32)
    a[:] = colour
    a += rng.integers(-30, 31, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def make_messy_folder(root: str, per_class: int = 40) -> dict:
    """Writes the dataset; returns {'root', 'odd': {relpath: kind}, 'bad': BAD, 'num_files'}."""
    odd = {}
    for c, (name, colour) in enumerate(CLASSES.items()):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(_image(colour, seed=100 * c + i, hw=(40 + i % 7, 56 - i % 5)))
            img.save(os.path.join(d, f"img_{i:03d}.{'png' if i % 3 == 0 else 'jpg'}"))
    # Odd but valid files, one kind per class folder.
    base = _image(CLASSES["cane"], 1)
    Image.fromarray(base).convert("CMYK").save(os.path.join(root, "cane/cmyk.jpg"))
    odd["cane/cmyk.jpg"] = "CMYK"
    rgba = Image.fromarray(base).convert("RGBA")
    rgba.save(os.path.join(root, "cane/rgba.png"))
    odd["cane/rgba.png"] = "RGBA"
    pal = Image.fromarray(_image(CLASSES["gatto"], 2)).convert("P", palette=Image.ADAPTIVE)
    pal.info["transparency"] = 0
    pal.save(os.path.join(root, "gatto/palette.png"), transparency=0)
    odd["gatto/palette.png"] = "P"
    g16 = (np.full((30, 30), 40000, np.uint16) + np.arange(30, dtype=np.uint16)[None]).astype(
        np.uint16
    )
    Image.fromarray(g16).save(os.path.join(root, "ragno/gray16.png"))
    odd["ragno/gray16.png"] = "I;16"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    Image.fromarray(_image(CLASSES["ragno"], 3, hw=(20, 60))).save(
        os.path.join(root, "ragno/rotated.jpg"), exif=exif
    )
    odd["ragno/rotated.jpg"] = "EXIF"
    # Broken files.
    open(os.path.join(root, "cane/empty.jpg"), "wb").close()
    buf = io.BytesIO()
    Image.fromarray(_image(CLASSES["gatto"], 4, hw=(64, 64))).save(buf, format="JPEG")
    with open(os.path.join(root, "gatto/truncated.jpg"), "wb") as f:
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    with open(os.path.join(root, "ragno/notes.jpg"), "w") as f:
        f.write("this is not a picture\n")
    with open(os.path.join(root, "ragno/readme.txt"), "w") as f:
        f.write("ignored: not an image extension\n")
    return {
        "root": root,
        "odd": odd,
        "bad": dict(BAD),
        "num_files": 3 * per_class + len(odd) + len(BAD),
    }
