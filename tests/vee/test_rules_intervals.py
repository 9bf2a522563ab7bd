"""Interval rules: positive and negative cases, thresholds at their edges."""

from __future__ import annotations

from amigate.config import VeeSettings
from amigate.vee.registry import RULES, runs
from tests.vee.builders import DAY, STEP, T0, data, intervals, points, span

CFG = VeeSettings()


def test_runs_yields_maximal_runs_of_minimum_length() -> None:
    flags = [True, True, False, True, False, False, True, True, True]
    assert list(runs(flags)) == [(0, 1), (3, 3), (6, 8)]
    assert list(runs(flags, 2)) == [(0, 1), (6, 8)]


def test_missing_interval_one_anomaly_per_run() -> None:
    d = data(intervals={"1.8.0": intervals([1, None, None, 1, None, 1])})
    found = RULES["missing_interval"](d, CFG)
    assert [(a.start.timestamp(), a.evidence["intervals"]) for a in found] == [
        (T0 + STEP, 2), (T0 + 4 * STEP, 1)
    ]
    assert not RULES["missing_interval"](data(intervals={"1.8.0": intervals([1, 1])}), CFG)


def test_duplicate_interval_is_an_overlap() -> None:
    cols = intervals([1, 1, 1])
    cols.ts[2] = cols.ts[1] + STEP // 2  # starts inside the previous one
    assert [a.kind for a in RULES["duplicate_interval"](data(intervals={"1.8.0": cols}), CFG)] == [
        "duplicate_interval"
    ]
    assert not RULES["duplicate_interval"](data(intervals={"1.8.0": intervals([1, 1, 1])}), CFG)
    spanning = intervals([1, 1, 1])
    spanning.ts[1] = spanning.ts[0] + STEP // 3  # first and last as a run's; the second overlaps
    (found,) = RULES["duplicate_interval"](data(intervals={"1.8.0": spanning}), CFG)
    assert found.start.timestamp() == spanning.ts[1]


def test_duplicate_read_of_one_boundary_with_another_value() -> None:
    reads = points([10.0, 10.1, 10.2])
    reads.ts[2] = reads.ts[1] + 40  # read again 40 s later, with another value
    d = data(intervals={"1.8.0": intervals([0.1])}, registers={"1.8.0": reads})
    (found,) = RULES["duplicate_interval"](d, CFG)
    assert (found.kind, found.evidence["values"]) == ("duplicate_read", ["10.1", "10.2"])
    reads.value[2] = reads.value[1]  # the same value again: a harmless retry
    assert not RULES["duplicate_interval"](d, CFG)


def _day(peak: float, base: float = 0.5, second: float | None = None) -> list[float | None]:
    values: list[float | None] = [base] * 96
    values[40] = peak
    if second is not None:
        values[41] = second
    return values


def test_spike_highest_vs_third_highest_at_the_edge() -> None:
    # third-highest 0.5: a spike needs (high - 0.5) / 0.5 > 3.0, i.e. high > 2.0
    over = data(intervals={"1.8.0": intervals(_day(2.01))})
    edge = data(intervals={"1.8.0": intervals(_day(2.0))})
    (found,) = RULES["spike"](over, CFG)
    assert found.start.timestamp() == T0 + 40 * STEP
    assert found.evidence["value_kwh"] == "2.01"
    assert not RULES["spike"](edge, CFG)


def test_spike_needs_to_exceed_history_too() -> None:
    usual = _day(3.0, second=3.0, base=0.5)
    usual[42] = 3.0  # three peaks of 3.0 a day: peaky, not a spike
    history = [v for _ in range(7) for v in usual]
    today = _day(5.0)  # intra-day spike, but under 2 × the usual 3.0 peak
    d = data(intervals={"1.8.0": intervals(history + today)}, since=T0 + 7 * DAY)
    assert not RULES["spike"](d, CFG)
    d = data(intervals={"1.8.0": intervals(history + _day(6.5))}, since=T0 + 7 * DAY)
    assert [a.kind for a in RULES["spike"](d, CFG)] == ["spike"]


def test_spike_ignores_small_absolute_values() -> None:
    d = data(intervals={"1.8.0": intervals(_day(0.04, base=0.001))})
    assert not RULES["spike"](d, CFG)


def _days(*per_interval: float) -> list[float | None]:
    return [v for v in per_interval for _ in range(96)]


def test_low_and_high_usage_vs_history() -> None:
    since = T0 + 7 * DAY
    low = data(intervals={"1.8.0": intervals(_days(*[0.1] * 7, 0.039))}, since=since)
    (found,) = RULES["usage_vs_history"](low, CFG)
    assert found.kind == "low_usage"
    assert found.evidence["ratio"] == 0.39
    assert found.start.timestamp() == since
    edge = data(intervals={"1.8.0": intervals(_days(*[0.1] * 7, 0.04))}, since=since)
    assert not RULES["usage_vs_history"](edge, CFG)
    high = data(intervals={"1.8.0": intervals(_days(*[0.1] * 7, 0.3001))}, since=since)
    assert [a.kind for a in RULES["usage_vs_history"](high, CFG)] == ["high_usage"]
    edge = data(intervals={"1.8.0": intervals(_days(*[0.1] * 7, 0.3))}, since=since)
    assert not RULES["usage_vs_history"](edge, CFG)
    short = data(intervals={"1.8.0": intervals(_days(*[0.1] * 6, 0.01))}, since=T0 + 6 * DAY)
    assert not RULES["usage_vs_history"](short, CFG)  # under history_min_days


def test_zero_consumption_while_energised() -> None:
    zeros = [0.0] * 96 + [0.1]
    volts = points([220.0] * 97)
    (found,) = RULES["zero_consumption"](
        data(intervals={"1.8.0": intervals(zeros)}, samples={"32.7.0": volts}), CFG
    )
    assert found.evidence["hours"] == 24
    short = [0.0] * 95 + [0.1]
    assert not RULES["zero_consumption"](data(intervals={"1.8.0": intervals(short)}), CFG)
    dead = points([0.0] * 97)
    assert not RULES["zero_consumption"](
        data(intervals={"1.8.0": intervals(zeros)}, samples={"32.7.0": dead}), CFG
    )


def test_sum_check_compares_intervals_with_the_register_delta() -> None:
    values = [0.25] * 96 + [0.25]
    reads = points([100.0, 124.0], step=DAY)  # delta 24 kWh, intervals say 24.0
    good = data(intervals={"1.8.0": intervals(values)}, registers={"1.8.0": reads})
    assert not RULES["sum_check"](good, CFG)
    bad_reads = points([100.0, 125.0], step=DAY)
    (found,) = RULES["sum_check"](
        data(intervals={"1.8.0": intervals(values)}, registers={"1.8.0": bad_reads}), CFG
    )
    assert found.evidence == {"channel": "1.8.0", "intervals_kwh": "24.0",
                              "register_delta_kwh": "25.0"}


def test_sum_check_counts_a_gap_span() -> None:
    values: list[float | None] = [0.25] * 96 + [0.25]
    values[10:14] = [None] * 4
    reads = points([100.0, 124.0], step=DAY)
    cells = {T0 + 10 * STEP: span(4 * STEP, 1.0)}
    d = data(intervals={"1.8.0": intervals(values)}, registers={"1.8.0": reads},
             versions={"1.8.0": cells})
    assert not RULES["sum_check"](d, CFG)  # the span carries the gap's energy: consistent
    cells[T0 + 10 * STEP] = span(4 * STEP, 2.0)
    assert [a.kind for a in RULES["sum_check"](d, CFG)] == ["sum_check"]
