"""tools/profile_step.py's report: times per step in milliseconds (a small model's ops take
fractions of one), averaged over the profiled steps, and groups that add up to the total."""

import re

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
