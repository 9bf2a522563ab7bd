"""Estimation: linear and like-day shapes, exact to the register delta, versions, idempotence."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from amigate.config import VeeSettings
from amigate.domain import Quality, Source
from amigate.storage.vee_queries import VersionCell
from amigate.vee.estimation import estimate_meter, like_day_class, share_exactly
from tests.vee.builders import DAY, STEP, T0, data, intervals, span

CFG = VeeSettings()


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50),
       st.integers(min_value=-10**9, max_value=10**12))  # fmt: skip
def test_share_exactly_sums_to_the_total(shape: list[float], total: int) -> None:
    parts = share_exactly(shape, total)
    assert sum(parts) == total
    assert len(parts) == len(shape)


def test_like_day_classes() -> None:
    monday = (T0 + 8 * 3600) // DAY
    classes = [like_day_class(monday + k) for k in range(7)]
    assert classes[1] == classes[2] == classes[3]  # Tue, Wed, Thu interchangeable
    assert len({classes[0], classes[1], classes[4], classes[5], classes[6]}) == 5


def test_short_gap_is_interpolated_to_meet_the_span_exactly() -> None:
    values: list[float | None] = [0.2] * 10 + [None] * 4 + [0.6] * 10
    cells = {T0 + 10 * STEP: span(4 * STEP, 2.0)}
    est = estimate_meter(data(intervals={"1.8.0": intervals(values)},
                              versions={"1.8.0": cells}), CFG)  # fmt: skip
    assert [e.start.timestamp() for e in est] == [T0 + k * STEP for k in range(10, 14)]
    assert sum(e.value for e in est if e.value is not None) == Decimal("2.0")
    assert all(e.value is not None and e.value > 0 for e in est)
    # increasing like the line from 0.2 to 0.6, scaled up to meet the delta
    assert [e.value for e in est] == sorted(e.value for e in est if e.value is not None)
    assert {(e.quality, e.method, e.source) for e in est} == {
        (Quality.SUBSTITUTED, 17, Source.ESTIMATION)
    }
    assert est[0].reason_codes == ("2.8.0", "2.8.1")
    assert [e.version for e in est] == [3, 2, 2, 2]  # the span is version 2 of the first slot


def test_gap_without_span_takes_the_straight_line() -> None:
    values: list[float | None] = [0.2] * 3 + [None] * 4 + [0.6] * 3
    est = estimate_meter(data(intervals={"1.8.0": intervals(values)}), CFG)
    assert [e.value for e in est] == [Decimal(x) for x in ("0.28", "0.36", "0.44", "0.52")]
    assert est[0].reason_codes == ("2.8.0",)


def test_missing_slots_that_overlap_are_no_gap_to_fill() -> None:
    """Missing intervals whose first and last start span what a run does, with one that
    overlaps inside, are not a contiguous gap: nothing is estimated over them."""
    values: list[float | None] = [0.2] * 3 + [None] * 3 + [0.6] * 3
    cols = intervals(values)
    cols.ts[4] = cols.ts[3] + STEP // 3  # 3, 3 1/3 and 5 steps: as a run's 3, 4 and 5 would
    assert not estimate_meter(data(intervals={"1.8.0": cols}), CFG)
    assert len(estimate_meter(data(intervals={"1.8.0": intervals(values)}), CFG)) == 3


def test_interpolation_limit_edge() -> None:
    # exactly 2 h (8 intervals) is still linear; 9 intervals go to like-day
    history = [0.1 + 0.001 * (k % 96) for k in range(28 * 96)]
    for n, method in ((8, 17), (9, 15)):
        values: list[float | None] = [*history, 0.2, *([None] * n), 0.2, 0.2]
        est = estimate_meter(data(intervals={"1.8.0": intervals(values)},
                                  since=T0 + 28 * DAY), CFG)  # fmt: skip
        assert {e.method for e in est} == {method}, n


def test_long_gap_is_the_average_of_the_last_four_like_days() -> None:
    days = 5 * 7
    values: list[float | None] = []
    for d in range(days):
        values += [round(0.1 * (1 + d // 7), 6)] * 96  # each week a little more
    gap_day = days - 7  # a Monday 4 weeks after the first one... every 7th day is a Monday
    for k in range(gap_day * 96 + 10, gap_day * 96 + 30):
        values[k] = None
    d = data(intervals={"1.8.0": intervals(values)}, since=T0 + 20 * DAY)
    est = estimate_meter(d, CFG)
    assert len(est) == 20 and {e.method for e in est} == {15}
    # like days: the previous 4 Mondays carry 0.4, 0.3, 0.2, 0.1 -> mean 0.25
    assert {e.value for e in est} == {Decimal("0.25")}


def test_open_gap_is_left_missing() -> None:
    values: list[float | None] = [0.2] * 5 + [None] * 3
    assert estimate_meter(data(intervals={"1.8.0": intervals(values)}), CFG) == []


def test_estimated_or_edited_gaps_are_not_estimated_again() -> None:
    values: list[float | None] = [0.2] * 3 + [None] * 2 + [0.6] * 3
    done = {
        T0 + k * STEP: VersionCell(2, STEP, 400_000, int(Quality.SUBSTITUTED), 17, "2.8.0",
                                   "amigate")
        for k in (3, 4)
    }  # fmt: skip
    assert estimate_meter(data(intervals={"1.8.0": intervals(values)},
                               versions={"1.8.0": done}), CFG) == []  # fmt: skip
    edited = {T0 + 3 * STEP: VersionCell(2, STEP, 1, int(Quality.SUBSTITUTED), 16, "2.7.0",
                                         "alice")}  # fmt: skip
    assert estimate_meter(data(intervals={"1.8.0": intervals(values)},
                               versions={"1.8.0": edited}), CFG) == []  # fmt: skip
