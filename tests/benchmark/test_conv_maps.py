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


def test_shapes_are_measured_and_tabulated():
    shapes = [(3, 16, 2), (3, 16, 6)]
    rows = [conv_maps.bench_shape(2, 1, *shape) for shape in shapes]
    # A 3x3 conv on a 2x2 map runs as the patches GEMM, on a 6x6 map as XLA's convolution.
    assert [r["impl"] for r in rows] == ["patches", "xla"]
    assert all(r[key] > 0 for r in rows for key in ("fa", "fb", "ba", "bb"))
    lines = conv_maps.table_lines(shapes, rows, None, "not run", 2, 1)
    assert lines[-2].startswith("| 3 | 16 | 2 | patches |")
    assert lines[-1].startswith("| 3 | 16 | 6 | xla |")


def test_unknown_op_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench_ops.main(["--op=pool"])
    assert e.value.code == 2
    assert "bench_ops: error:" in capsys.readouterr().err
