"""What the benchmarks share: the CPU time a virtual machine's host took while something was
measured, read from /proc/stat."""

import os

import pytest

from jaxcls.benchmark import common


def stat_line(user, system, idle, steal, guest=0):
    # user nice system idle iowait irq softirq steal guest guest_nice, then one line per CPU
    return f"cpu  {user} 0 {system} {idle} 0 0 0 {steal} {guest} 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_steal_is_the_stolen_share_of_all_cpu_ticks_summed_over_every_measured_span(tmp_path):
    stat = tmp_path / "stat"
    meter = common.StealMeter(str(stat))
    stat.write_text(stat_line(100, 50, 800, 50, guest=999))
    with meter:
        stat.write_text(stat_line(200, 60, 900, 90, guest=5000))  # guest time is in user already
    assert meter.percent == pytest.approx(100 * 40 / 250)
    stat.write_text(stat_line(1000, 60, 900, 90))  # between the spans: not counted
    with meter:
        stat.write_text(stat_line(1700, 100, 1000, 250))  # 160 of 1000 more
    assert meter.percent == pytest.approx(100 * 200 / 1250)


def test_steal_is_unknown_where_the_cpu_counters_cannot_be_read(tmp_path):
    with common.StealMeter(str(tmp_path / "missing")) as meter:
        pass
    assert meter.percent is None
    old = tmp_path / "old"
    old.write_text("cpu  1 2 3 4\n")  # a kernel without the steal field
    assert common.cpu_ticks(str(old)) is None
    with common.StealMeter(str(old)) as meter:
        pass
    assert meter.percent is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux's /proc/stat")
def test_this_machines_counters_give_a_share_between_0_and_100():
    total, stolen = common.cpu_ticks()
    assert 0 <= stolen <= total and total > 0
    with common.StealMeter() as meter:
        sum(i * i for i in range(3_000_000))  # about 0.2 s: tens of clock ticks over the CPUs
    assert 0 <= meter.percent <= 100
