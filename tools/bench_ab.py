r"""A/B benchmark of the real train step: a reference formulation vs the current code, interleaved.

  python tools/bench_ab.py --models=efficientnet_b0 --variant=depthwise_autodiff \
      [--batch=32] [--size=224] [--rounds=5] [--cpu_devices=1]

On a shared or noisy machine absolute images/sec drift from minute to minute, so both train steps
are compiled in one process and timed alternately (A, B, A, B, ...; one step each); the report is
the median time of each and their ratio. Variant A is the current code with one piece swapped back
to a reference formulation while the step is traced (``--variant``):

* ``depthwise_shifted``: the pure-JAX shifted form (with its custom backward) instead of the
  native depthwise kernels (jaxcls/native).
* ``depthwise_autodiff``: the pure-JAX shifted form with plain autodiff of its tap sum, i.e. the
  code before either.
* ``depthwise_grouped``: XLA's grouped convolution for depthwise layers.
* ``conv_xla``: XLA's own convolution for every dense convolution (no tap-wise einsums, no
  patches GEMMs).
* ``conv_all_taps``: the patches GEMM of a tiny-map convolution over all kernel taps, including
  those that see only padding (models/conv.py ``live_taps``).
* ``stem_conv_xla``: XLA's convolution for dense convolutions with 1-4 input channels (a stem on
  RGB images) instead of the native kernels (models/conv.py, jaxcls/native/stem_conv.cc).
* ``dense_conv_xla``: XLA's convolution for 3x3 stride-1 convolutions with 5-256 channels instead
  of the native dense kernels (models/conv.py ``NATIVE_MAX_CHANNELS``, jaxcls/native/dense_conv.cc).
* ``direct_conv``: the native 3x3 stride-1 kernels (forward pass, input and weight gradients)
  computed directly instead of as Winograd's F(2x2, 3x3) (models/conv.py ``NATIVE_WINOGRAD``).
* ``winograd_wgrad_narrow``: the weight gradient of 3x3 stride-1 convolutions with fewer than 32
  input channels as Winograd's where the call fits it, instead of directly (models/conv.py
  ``WINOGRAD_WGRAD_MIN_CHANNELS``).
* ``pointwise_wgrad_taps``: the weight gradient of 1x1 stride-1 convolutions as XLA's einsum
  (the 'taps' form) instead of the native kernels (models/conv.py ``NATIVE_POINTWISE_WGRAD`` and
  ``NATIVE_POINTWISE_BWD`` off).
* ``pointwise_bwd_split``: both gradients of 1x1 stride-1 convolutions with at most 48 input
  channels as the native weight-gradient kernel and XLA's GEMM, instead of the one native kernel
  that reads the output gradient once (models/conv.py ``NATIVE_POINTWISE_BWD``,
  jaxcls/native/pointwise.cc).
* ``strided_conv_xla``: XLA's convolution for 3x3 stride-2 convolutions and the tap-wise form
  for 1x1 stride-2 ones, instead of the native dense kernels' forward pass and weight gradient
  (models/conv.py ``NATIVE_STRIDE2``).
* ``strided_input_grad_xla``: XLA's transposed convolution for the input gradient of those
  native strided convolutions instead of the native forward kernel once per output phase
  (models/conv.py ``NATIVE_STRIDED_INPUT_GRAD``).
* ``batch_stats_xla``: BatchNorm's batch statistics and their gradient sums as XLA's reductions
  (autodiff of the jax.numpy form) instead of the native one-pass sums (models/batch_stats.py).
* ``bn_pool_unfused``: a BatchNorm followed by the native max pool in training (the scratch CNNs'
  and VGG's blocks, ResNet's, DenseNet's and Inception's stems) writes its normalised map and the
  pool reads it, instead
  of the pool normalising the taps it reads and applying BatchNorm's backward as it writes its
  input gradient (models/batch_stats.py ``normalize_max_pool_train``, ``NATIVE_POOLED``).
* ``bn_act_unfused``: a ReLU or ReLU6 after a BatchNorm in training writes its input gradient
  and BatchNorm's backward reads it, instead of BatchNorm's sums and elementwise backward taking
  the activation's gradient themselves (models/batch_stats.py ``normalize_act_train``,
  ``NATIVE_ACT``).
* ``bn_dw_unfused``: a BatchNorm followed by a ReLU or ReLU6 and a native depthwise convolution
  in training (MobileNetV2's and EfficientNet-Lite's inverted residuals) writes its activation
  and the convolution reads it, and BatchNorm's backward sums the activation's gradient in a pass
  of its own, instead of the depthwise kernels computing the activation image by image as they
  read BatchNorm's input and masking and summing the gradient as they write it
  (models/batch_stats.py ``normalize_act_depthwise_train``, ``NATIVE_DEPTHWISE``).
* ``dw_moments_separate``: the BatchNorm after a native depthwise convolution in training
  (MobileNetV2's and EfficientNet's blocks) sums the convolution's output in a pass of its own
  (the native moments kernel), instead of taking the sums the convolution's forward kernel took
  over each output row right after writing it (models/depthwise.py ``depthwise_conv_moments``,
  models/batch_stats.py ``NATIVE_DW_MOMENTS``).
* ``bn_expand_unfused``: the 1x1 expansion before a BatchNorm, ReLU6 and native depthwise
  convolution in training (MobileNetV2's and EfficientNet-Lite's inverted residuals with at most
  48 input channels) reads BatchNorm's input gradient, written by XLA's elementwise backward,
  instead of its native both-gradients kernel building that gradient chunk by chunk from the
  activation's output gradient and its own output (models/batch_stats.py
  ``expand_normalize_act_depthwise_train``, ``NATIVE_EXPAND``).
* ``densenet_moments_unshared``: each of DenseNet's BatchNorm layers in training sums its whole
  input for its batch statistics, instead of taking the moments of the channels the layers
  before it summed (models/densenet.py ``SHARED_MOMENTS``; bit-identical either way).
* ``image_sums_reduce``: the native depthwise and stem kernels' per-image kernel gradients added
  up by XLA's reduction instead of a product with ones (models/conv.py ``sum_over_images``,
  ``SUM_IMAGES_AS_DOT``).
* ``se_grad_xla``: a squeeze-excite's gate gradient in training as XLA's reduction of ``g * x``
  over each map instead of the native per-image sums (models/batch_stats.py
  ``rescale_channels``, ``NATIVE_RESCALE``).
* ``conv_ynnpack``: XLA:CPU's default library for dense convolutions, YNNPACK, instead of Eigen
  (models/conv.py ``compiler_options``).
* ``max_pool_xla``: max pooling differentiated by XLA (select-and-scatter) instead of the
  custom gradient over window taps (models/pool.py).
* ``max_pool_taps``: max pooling as XLA's reduce-window with the custom gradient over window taps
  (models/pool.py 'taps') instead of the native kernels ('native', jaxcls/native/max_pool.cc).
* ``act_before_pool``: the ReLU before its max pool (ResNet's and DenseNet's stem, the scratch
  CNNs' and VGG's blocks and Inception's stem pools in training), as the networks are written,
  instead of after it on the pooled map (models/layers.py ``norm_act_max_pooled``; the same values
  and gradients); BatchNorm is then outside the pool too.
* ``skip_select``: the optimizer update applied and then undone per leaf by ``jnp.where`` when a
  step is not finite, instead of inside ``lax.cond`` (trainer/steps.py ``apply_if_finite``).
* ``silu_autodiff``: SiLU differentiated by autodiff of ``jax.nn.silu`` (which keeps the
  forward pass's sigmoid) instead of recomputing it (models/layers.py ``SILU_RECOMPUTE``).
* ``pool_conv_as_written``: an average pool and a 1x1 convolution in the order the network is
  written (DenseNet's transitions convolve, then pool; Inception's pool branches pool, then
  convolve) instead of the cheaper one (models/layers.py ``avg_pool_pointwise``).
* ``inception_pad_first``: Inception-v3's units pad their input with ``jnp.pad`` before a
  'valid' convolution instead of handing the padding to the convolution
  (models/inception.py ``PAD_IN_CONV``).
* ``all_cpu_devices``: the same step data-parallel over one XLA:CPU device per core (the tool
  makes them) instead of on one device: what the trainer weighs when ``cpu_devices=0``
  (``parallel.auto_cpu_mesh_size``).

Variant B is the current code. The train step is the trainer's (steps.CompiledSteps: SGD with
momentum, cross-entropy, BatchNorm updates, donated state) on one device, or with
``--cpu_devices=N`` data-parallel over N XLA:CPU devices (0: one per core), both sides.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxcls.benchmark import ab, common  # noqa: E402
from tools import cli  # noqa: E402

TOOL = "bench_ab"


def main(argv=None) -> int:
    p = cli.ArgumentParser(TOOL, description=__doc__)
    p.add_argument("--models", default="efficientnet_b0")
    p.add_argument("--variant", default="depthwise_autodiff", choices=ab.VARIANTS)
    p.add_argument("--batch", type=cli.positive_int, default=32)
    p.add_argument("--size", type=cli.positive_int, default=224)
    p.add_argument("--rounds", type=cli.positive_int, default=5)
    p.add_argument("--cpu_devices", type=cli.non_negative_int, default=1)
    args = p.parse_args(argv)
    if args.variant == "all_cpu_devices" and args.cpu_devices != 1:
        p.error("--variant=all_cpu_devices compares all devices with one; leave --cpu_devices out")
    try:
        common.check_batch_divides(args.batch, args.cpu_devices)
    except common.UsageError as e:
        p.error(str(e))
    # Before JAX starts its backends; 'all_cpu_devices' makes one device per core.
    devices = 0 if args.variant == "all_cpu_devices" else args.cpu_devices
    common.prepare_process(None if devices == 1 else devices, [args.batch])
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    try:  # before compiling anything: every name known, the size one each model can take
        if not names:
            raise ValueError("--models is empty")
        cli.check_models(names, args.size)
    except ValueError as e:
        return cli.fail(TOOL, e)
    return ab.run(
        names,
        variant=args.variant,
        batch=args.batch,
        size=args.size,
        rounds=args.rounds,
        devices=args.cpu_devices,
    )


if __name__ == "__main__":
    sys.exit(main())
