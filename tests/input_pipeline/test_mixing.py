"""mixup and cutmix: the soft label weights equal what was actually mixed into each image."""

import numpy as np
import pytest

from input_pipeline.mixing import BatchMixer


def two_class_batch(b=8, hw=(10, 12)):
    labels = np.array([0] * (b // 2) + [1] * (b // 2), np.int32)
    images = np.zeros((b, *hw, 3), np.float32)
    images[labels == 1] = 1.0
    return {"image": images, "label": labels, "id": np.arange(b, dtype=np.int32)}


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_label_weight_is_the_pasted_area(seed):
    batch = two_class_batch()
    out = BatchMixer(2, cutmix_alpha=1.0)(batch, np.random.default_rng(seed))
    for i in range(8):
        own = int(batch["label"][i])
        # Partners (i, 7 - i) have different classes, so pixels from the partner are 1 - own.
        partner_fraction = np.mean(out["image"][i, ..., 0] == 1 - own)
        np.testing.assert_allclose(out["label_onehot"][i, 1 - own], partner_fraction, atol=1e-6)
    np.testing.assert_array_equal(out["label"], batch["label"])  # Hard labels kept for metrics.


@pytest.mark.parametrize("seed", range(5))
def test_mixup_label_weight_is_the_blend_weight(seed):
    batch = two_class_batch()
    out = BatchMixer(2, mixup_alpha=0.4)(batch, np.random.default_rng(seed))
    # Class-1 images are all ones: the pixel value is the class-1 weight.
    np.testing.assert_allclose(out["image"][:, 0, 0, 0], out["label_onehot"][:, 1], atol=1e-6)


def test_mix_prob_zero_gives_plain_one_hot():
    batch = two_class_batch()
    out = BatchMixer(2, mixup_alpha=1.0, prob=0.0)(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], batch["image"])
    np.testing.assert_array_equal(out["label_onehot"], np.eye(2)[batch["label"]])
    with pytest.raises(ValueError):
        BatchMixer(2, mixup_alpha=-1.0)
