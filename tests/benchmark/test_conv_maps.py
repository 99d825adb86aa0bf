"""bench_ops --op=conv: the small-map sweep runs both formulations, checks they agree, picks the
patches GEMM on tiny maps and XLA elsewhere, and writes its table."""

import pytest

from jaxcls.benchmark import conv_maps
from tools import bench_ops


def test_grid_covers_maps_1_to_16_and_channels_64_to_2048():
    shapes = conv_maps.grid()
    assert {hw for _, _, hw in shapes} == set(conv_maps.MAP_SIZES)
    assert {c for _, c, _ in shapes} == {64, 128, 256, 512, 1024, 2048}
    assert {k for k, _, _ in shapes} == {1, 3}


def test_grid_takes_the_channels_and_kernels_asked_for():
    shapes = conv_maps.grid((28, 56), channels=(64, 128), kernels=(3,))
    assert shapes == [(3, 64, 28), (3, 64, 56), (3, 128, 28), (3, 128, 56)]
    assert {c for _, c, _ in conv_maps.grid((7,), channels=(32,), kernels=(1,))} == {1024, 2048}


def test_both_sides_compile_with_the_trainers_cpu_convolution_options():
    """A and B are the programs the trainer would run: their convolutions stay out of YNNPACK
    (`conv.compiler_options`), which runs them when the option is not given."""
    import jax

    from jaxcls.models import conv
    from tests.models.test_conv import _ynn_fusions

    # A shape whose convolution XLA's default hands to YNNPACK (as in tests/models/test_conv.py).
    x, ct = jax.numpy.ones((8, 28, 28, 64)), jax.numpy.ones((8, 28, 28, 64))
    w = jax.numpy.ones((3, 3, 64, 64))
    forward, both = conv_maps._functions("xla", 3)
    for fn, args in ((forward, (x, w)), (both, (x, w, ct))):
        assert _ynn_fusions(fn.lower(*args).compile().as_text())[1] == 0
    with conv.set_cpu_conv_library("ynnpack"):  # compiler_options() is None: XLA's default
        forward, _ = conv_maps._functions("xla", 3)
    assert _ynn_fusions(forward.lower(x, w).compile().as_text())[1] > 0


def test_shapes_are_measured_and_tabulated():
    shapes = [(3, 16, 2), (3, 16, 6), (3, 320, 3)]
    rows = [conv_maps.bench_shape(2, 1, *shape) for shape in shapes]
    # A 3x3 conv on a 2x2 map runs as the patches GEMM, on a 6x6 map with 16 channels as the
    # native kernels, with 320 channels (over NATIVE_MAX_CHANNELS) as XLA's convolution.
    assert [r["impl"] for r in rows] == ["patches", "native", "xla"]
    assert all(r[key] > 0 for r in rows for key in ("fa", "fb", "ba", "bb"))
    lines = conv_maps.table_lines(shapes, rows, None, "not run", 2, 1)
    assert lines[-3].startswith("| 3 | 16 | 2 | patches |")
    assert lines[-2].startswith("| 3 | 16 | 6 | native |")
    assert lines[-1].startswith("| 3 | 320 | 3 | xla |")


@pytest.mark.parametrize(
    "args,says",
    [
        (["--op=pool"], "--op"),
        (["--op=conv", "--kernels=3,5"], "--kernels takes 1 and/or 3"),
        (["--op=conv", "--channels=64,0"], "--channels"),
    ],
)
def test_bad_flags_are_a_usage_error(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        bench_ops.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "bench_ops: error:" in err and says in err and err.count("\n") == 1
