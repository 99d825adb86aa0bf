"""bench_ops --op=kernels: every native kernel is timed against XLA's form of the same op after
the two are checked to agree, and the table names each."""

import pytest

from jaxcls.benchmark import kernels
from jaxcls.models import batch_stats


@pytest.fixture
def small_shapes(monkeypatch):
    monkeypatch.setattr(kernels, "DENSE", ((6, 8, 8),))
    monkeypatch.setattr(kernels, "STRIDED", ((7, 8, 16, 3), (6, 8, 16, 1)))
    monkeypatch.setattr(kernels, "POINTWISE", ((6, 16, 8),))
    monkeypatch.setattr(kernels, "POINTWISE_BWD", ((6, 8, 24),))
    monkeypatch.setattr(kernels, "BN_DEPTHWISE", ((7, 20, 2),))
    monkeypatch.setattr(kernels, "EXPAND", ((8, 8, 24, 2),))
    monkeypatch.setattr(kernels, "DW_MOMENTS", ((6, 20, 1),))
    monkeypatch.setattr(kernels, "STEM", (12, 3, 8))
    monkeypatch.setattr(kernels, "NORMS", ((5, 24),))
    monkeypatch.setattr(kernels, "POOL", (9, 20))


def test_every_kernel_is_timed_against_xla_and_tabulated(small_shapes, tmp_path):
    out = tmp_path / "kernels.md"
    assert kernels.run(batch=2, rounds=2, out=str(out)) == 0
    table = out.read_text()
    for name in (
        "3x3 6x6 8->8 forward",
        "3x3 6x6 8->8 weight gradient",
        "3x3 stride 2 7x7 8->16 forward",
        "3x3 stride 2 7x7 8->16 input gradient",
        "1x1 stride 2 6x6 8->16 forward",
        "1x1 stride 2 6x6 8->16 input gradient",
        "1x1 6x6 16->8 weight gradient",
        "1x1 6x6 8->24 both gradients",
        "BatchNorm + ReLU6 + depthwise 3x3 stride 2 7x7x20 forward",
        "BatchNorm + ReLU6 + depthwise 3x3 stride 2 7x7x20 forward and gradients",
        "1x1 8x8 8->24 + BatchNorm + ReLU6 + depthwise 3x3 stride 2 forward and gradients",
        "depthwise 3x3 stride 1 6x6x20 forward and its output's moments",
        "stem 7x7 stride 2 12x12 3->8 forward",
        "stem 7x7 stride 2 12x12 3->8 weight gradient",
        "BatchNorm 5x5x24 sums of x, x^2",
        "BatchNorm 5x5x24 sums of g, g*x",
        "max pool 3x3 stride 2 9x9x20 forward and winners",
        "max pool 3x3 stride 2 9x9x20 input gradient",
    ):
        assert f"| {name} |" in table, name
    assert table.count("GFLOP/s |") == 10 and table.count("GB/s |") == 8


def test_a_kernel_that_disagrees_with_xla_is_reported_not_timed(small_shapes, monkeypatch):
    wrong = batch_stats._moments
    # (the rows that also sum a depthwise output through it would be the first to disagree)
    monkeypatch.setattr(kernels, "BN_DEPTHWISE", ())
    monkeypatch.setattr(kernels, "EXPAND", ())
    monkeypatch.setattr(kernels, "DW_MOMENTS", ())
    monkeypatch.setattr(batch_stats, "_moments", lambda x: tuple(s * 1.01 for s in wrong(x)))
    with pytest.raises(AssertionError, match="sums of x, x\\^2: XLA and native differ"):
        kernels.bench(batch=2, rounds=1)


def test_the_forward_and_gradients_rows_keep_the_forward_kernels(small_shapes):
    """A row named 'forward and gradients' must run the forward pass on both sides: gradients
    alone do not need the depthwise convolution's output, and XLA dropped its forward call (on
    both sides) while the rows returned only the gradients. The expansion's row compares the two
    1x1 kernels it names."""
    import jax

    rows = [c for c in kernels._cases(2) if c[0].endswith("forward and gradients")]
    assert len(rows) == 2
    for name, a, b, args, _, _ in rows:
        unfused = jax.jit(a).lower(*args).compile().as_text()
        fused = jax.jit(b).lower(*args).compile().as_text()
        # The expansion's rows have BatchNorm inside the depthwise kernels on both sides.
        forward = "affine_fwd" if name.startswith("1x1") else "fwd"
        assert f'custom_call_target="jaxcls_depthwise_{forward}"' in unfused, name
        assert 'custom_call_target="jaxcls_depthwise_affine_fwd"' in fused, name
        if name.startswith("1x1"):  # A: the gradient written, then read by the 1x1 kernel
            assert 'custom_call_target="jaxcls_pointwise_bwd"' in unfused, name
            assert 'custom_call_target="jaxcls_pointwise_bn_bwd"' in fused, name
            assert 'custom_call_target="jaxcls_pointwise_bwd"' not in fused, name
