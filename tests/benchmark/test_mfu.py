"""MFU: the peak table is matched by device kind, and the figure is images/s x 3 x forward FLOPs
over the devices' peak; unknown devices or dtypes give None, never a guess."""

import pytest

from jaxcls.benchmark import mfu


@pytest.mark.parametrize(
    "kind, dtype, tflops",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989.0),
        ("NVIDIA H100 PCIe", "bfloat16", 756.0),
        ("NVIDIA H200", "bfloat16", 989.0),
        ("NVIDIA H200", "float32", 495.0),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
        ("NVIDIA L4", "bfloat16", 121.0),
        ("Tesla T4", "float32", 8.1),
        ("TPU v4", "bfloat16", 275.0),
        ("TPU v5 lite", "bfloat16", 197.0),
        ("TPU v6 lite", "bfloat16", 918.0),
    ],
)
def test_peak_by_device_kind(kind, dtype, tflops):
    assert mfu.peak_flops(kind, dtype) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize(
    "kind, dtype", [("cpu", "float32"), ("TPU v4", "float32"), ("Tesla T4", "bfloat16")]
)
def test_unknown_peak_gives_no_mfu(kind, dtype):
    assert mfu.peak_flops(kind, dtype) is None
    assert mfu.mfu(1000.0, 4.0, kind, dtype) is None


def test_mfu_formula():
    # A model of 4.1 forward GFLOPs at 5,000 img/s on one H200 in bf16:
    # 5000 * 3 * 4.1e9 / 989e12 = 6.2 %.
    assert mfu.mfu(5000.0, 4.1, "NVIDIA H200", "bfloat16") == pytest.approx(0.0622, abs=1e-4)
    # Two devices at the same total rate: half the utilisation.
    assert mfu.mfu(5000.0, 4.1, "NVIDIA H200", "bfloat16", devices=2) == pytest.approx(
        0.0311, abs=1e-4
    )
    assert mfu.mfu(None, 4.1, "NVIDIA H200", "bfloat16") is None
