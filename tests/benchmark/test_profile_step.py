"""tools/profile_step.py's report: times per step in milliseconds (a small model's ops take
fractions of one), averaged over the profiled steps, and groups that add up to the total; the
time when no thunk ran; the eval-mode forward pass with ``forward=True``."""

import re

import pytest

from jaxcls.benchmark import profile_step


def test_the_report_gives_per_step_milliseconds_that_add_up(capsys):
    assert profile_step.run("cnn_small", batch=8, size=16, top=1000, steps=3) == 0
    out = capsys.readouterr().out
    head = re.match(
        r"cnn_small batch 8 16px: step ([\d.]+) ms \(median of 3 steps; thunk times are means per "
        r"step\), thunk time summed over threads ([\d.]+) ms, (\d+) thunk runs",
        out,
    )
    assert head, out[:500]
    step_ms, total_ms, runs = float(head[1]), float(head[2]), int(head[3])
    assert step_ms > 0 and total_ms > 0 and runs > 10  # a real step: dozens of thunks
    groups, largest = out.split("by thunk kind and JAX op:")[1].split("largest single thunks:")
    group_ms = [float(m) for m in re.findall(r"^\s*([\d.]+) ms\s", groups, re.M)]
    # Every group printed (top is larger than their number): they are the total, split up.
    assert abs(sum(group_ms) - total_ms) <= 0.01 * len(group_ms) + 0.01
    assert any(v > 0 for v in group_ms)  # not rounded to nothing, as whole seconds were
    assert re.search(r"^\s*[\d.]+ ms \S+", largest, re.M)


def test_idle_time_is_the_part_of_each_program_no_thunk_covers():
    """Overlapping thunks on two threads count once; a thunk past a program's end counts only
    inside it; two programs add up."""
    thunks = [(10, 20), (15, 30), (50, 60), (90, 120), (205, 210)]
    assert profile_step.idle_ns([(0, 100)], thunks) == 100 - (20 + 10 + 10)
    assert profile_step.idle_ns([(0, 100), (200, 220)], thunks) == 60 + 15
    assert profile_step.idle_ns([(0, 100)], []) == 100


def test_the_forward_pass_report_has_the_same_form(capsys):
    assert profile_step.run("cnn_small", batch=1, size=16, top=1000, steps=3, forward=True) == 0
    out = capsys.readouterr().out
    head = re.match(
        r"cnn_small batch 1 16px: forward pass ([\d.]+) ms \(median of 3 forward passes; thunk "
        r"times are means per forward pass\), thunk time summed over threads ([\d.]+) ms, (\d+) "
        r"thunk runs\nno thunk running for ([\d.]+) ms of the forward pass",
        out,
    )
    assert head, out[:500]
    forward_ms, total_ms, idle_ms = float(head[1]), float(head[2]), float(head[4])
    assert forward_ms > 0 and total_ms > 0 and 0 <= idle_ms <= forward_ms
    # An eval-mode forward pass: no gradient ops among the groups.
    groups = out.split("by thunk kind and JAX op:")[1].split("largest single thunks:")[0]
    assert "jit(forward)" in groups and "transpose(jvp" not in groups


def test_a_variant_profiles_bench_abs_reference_program(capsys):
    """``variant``: the program bench_ab runs as side A (here BatchNorm's gradient sums in XLA,
    so no native sums kernel among the thunks), and the current one without it."""
    from jaxcls.models import batch_stats

    if not batch_stats.native.available():
        pytest.skip("native kernels unavailable")
    assert profile_step.run("cnn_small", batch=8, size=16, top=1000, steps=1) == 0
    assert "(f32[16]{0}," in capsys.readouterr().out  # the sums' (total, dot) results
    assert (
        profile_step.run(
            "cnn_small", batch=8, size=16, top=1000, steps=1, variant="batch_stats_xla"
        )
        == 0
    )
    assert "(f32[16]{0}," not in capsys.readouterr().out
