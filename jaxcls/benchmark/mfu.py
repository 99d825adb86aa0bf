"""Model FLOPs utilisation: the share of a device's peak arithmetic a train step uses.

    MFU = images/s x training FLOPs per image / (devices x peak FLOP/s of one device)

Training FLOPs per image are taken as 3 x the forward pass (the backward pass costs about twice
the forward: one product for the input gradient, one for the weight gradient), with the forward
GFLOPs from XLA's cost analysis (`jaxcls.models.summary.gflops_of`). Rematerialisation or extra
work XLA adds is not counted: this is MFU, not hardware FLOPs utilisation.

Peak dense (no structured sparsity) FLOP/s per device, from the vendors' data sheets:

* NVIDIA H100 SXM and H200 SXM: 989 TFLOP/s bf16, 495 TF32 (H100/H200 data sheets, "Tensor Core"
  rows, without sparsity); H100 PCIe: 756 bf16, 378 TF32.
* NVIDIA A100 (SXM and PCIe): 312 bf16, 156 TF32 (A100 data sheet).
* NVIDIA L4: 121 bf16, 60 TF32 (L4 data sheet: 242 / 120 are with sparsity).
* NVIDIA T4: 65 fp16 (no bf16 units), 8.1 fp32 (T4 data sheet).
* Google TPU v4: 275 bf16; TPU v5e: 197 bf16; TPU v6e (Trillium): 918 bf16 (Cloud TPU system
  architecture pages). TPUs run float32 matmuls as bf16 passes by default; the float32 figure
  is left unknown rather than guessed.

float32 on NVIDIA Ampere and later is compared with the TF32 peak, the tensor-core rate XLA's
default precision allows for float32 convolutions and matmuls. A device not in the table gets
no MFU (None), never a guessed one.
"""

from __future__ import annotations

from jaxcls.models.summary import train_flops_per_image

TFLOPS = 1e12

# device_kind substring (lower case) -> {compute dtype: peak TFLOP/s}; first match wins, so more
# specific names come first.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("h100 pcie", {"bfloat16": 756.0, "float32": 378.0}),
    ("h100", {"bfloat16": 989.0, "float32": 495.0}),
    ("h200", {"bfloat16": 989.0, "float32": 495.0}),
    ("a100", {"bfloat16": 312.0, "float32": 156.0}),
    ("l4", {"bfloat16": 121.0, "float32": 60.0}),
    ("t4", {"float16": 65.0, "float32": 8.1}),
    ("tpu v4", {"bfloat16": 275.0}),
    ("tpu v5 lite", {"bfloat16": 197.0}),
    ("tpu v5e", {"bfloat16": 197.0}),
    ("tpu v6 lite", {"bfloat16": 918.0}),
    ("tpu v6e", {"bfloat16": 918.0}),
)


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Peak FLOP/s of one device of ``device_kind`` (``jax.Device.device_kind``) computing in
    ``dtype`` ('float32' | 'bfloat16' | 'float16'), or None when not known."""
    kind = device_kind.lower()
    for name, peaks in PEAK_TFLOPS:
        if name in kind:
            value = peaks.get(str(dtype))
            return None if value is None else value * TFLOPS
    return None


def mfu(
    images_per_sec: float | None,
    forward_gflops: float | None,
    device_kind: str,
    dtype: str,
    devices: int = 1,
) -> float | None:
    """The fraction (0..1) of ``devices`` devices' peak used, or None when anything is unknown."""
    peak = peak_flops(device_kind, dtype)
    if not peak or not images_per_sec or not forward_gflops:
        return None
    return images_per_sec * train_flops_per_image(forward_gflops) / (devices * peak)
