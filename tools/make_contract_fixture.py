"""Writes tests/weights/fixtures/contract_timm_b0.npz: a photo and timm's probabilities for it,
through timm's own default eval transform, for the converted-file preprocessing contract test.

Two steps, in two environments::

    # 1. the photo (scikit-image's chelsea, as PNG bytes so both sides decode the same pixels):
    python tools/make_contract_fixture.py --step=photo
    # 2. timm's probabilities (REF_PYTHON: torch 2.14.1, torchvision 0.29.1, timm 1.0.31,
    #    safetensors): timm's efficientnet_b0 shrunk as the parity fixture 'timm_efficientnet_b0'
    #    (tools/make_weight_fixtures.py), its committed weights loaded strictly, fed by
    #    ``timm.data.create_transform(**resolve_data_config(pretrained_cfg=<efficientnet_b0's
    #    default cfg>))`` -- what timm does for a user who does not choose a preprocessing:
    "$REF_PYTHON" tools/make_contract_fixture.py --step=reference

tests/weights/test_contract.py converts the same weights *without a tag* with
tools/convert_weights.py and checks that tools/predict.py's probabilities on the photo equal
timm's within 1e-4.
"""

from __future__ import annotations

import argparse
import io
import json
import os

import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "weights", "fixtures")
OUT = os.path.join(FIXTURES, "contract_timm_b0.npz")
WEIGHTS = os.path.join(FIXTURES, "timm_efficientnet_b0.safetensors")
ARCH = "efficientnet_b0"
SMALL = {"channel_multiplier": 0.1, "depth_multiplier": 0.34}  # as the parity fixture
NUM_CLASSES = 10


def photo() -> None:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    np.savez_compressed(OUT, photo_png=np.frombuffer(buf.getvalue(), np.uint8))
    print(f"{OUT}: chelsea as {len(buf.getvalue())} PNG bytes")


def reference() -> None:
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from timm.models import efficientnet

    model = efficientnet._gen_efficientnet(ARCH, num_classes=NUM_CLASSES, **SMALL)
    state = {k: v.float() for k, v in load_file(WEIGHTS).items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    cfg = timm.models.get_pretrained_cfg(ARCH)
    data_config = timm.data.resolve_data_config({}, pretrained_cfg=cfg.to_dict())
    transform = timm.data.create_transform(**data_config)
    stored = dict(np.load(OUT))
    image = Image.open(io.BytesIO(stored["photo_png"].tobytes())).convert("RGB")
    with torch.no_grad():
        probs = torch.softmax(model(transform(image)[None]), -1)[0].numpy()
    record = {
        "default_tag": f"{ARCH}.{cfg.tag}",
        "data_config": data_config,
        "timm": timm.__version__,
    }
    np.savez_compressed(OUT, **stored, probs=probs, record=np.array(json.dumps(record)))
    print(record, "\n", transform, "\n", np.round(probs, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", choices=("photo", "reference"), required=True)
    args = parser.parse_args()
    photo() if args.step == "photo" else reference()


if __name__ == "__main__":
    main()
