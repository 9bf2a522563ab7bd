"""Register reads to intervals: alignment, exact deltas, gaps, rollover, anomalies."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amigate.domain import Interval, Quality, RegisterRead, Severity, Source
from amigate.normalize import (
    SPAN_REASON,
    Anchor,
    ChannelPolicy,
    SeriesNormalizer,
    floor_boundary,
    latest,
    normalize_reads,
    sample_multiplier,
)

T0 = datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
IV = timedelta(minutes=15)


def _read(slot: int, value: str | Decimal, *, late_s: float = 7.0) -> RegisterRead:
    at = T0 + slot * IV + timedelta(seconds=late_s)
    return RegisterRead(
        meter_id=1, channel="1.8.0", read_at=at, value=Decimal(value), collected_at=at
    )


def _series(
    *,
    multiplier: Decimal = Decimal(1),
    capacity: Decimal | None = None,
    max_kw: Decimal | None = None,
) -> SeriesNormalizer:
    policy = ChannelPolicy(multiplier=multiplier, capacity=capacity, max_kw=max_kw)
    return SeriesNormalizer(meter_id=1, channel="1.8.0", interval=IV, policy=policy)


def _total(rows: list[Interval]) -> Decimal:
    return sum((iv.value for iv in latest(rows) if iv.value is not None), Decimal(0))


def _originals(rows: list[Interval]) -> list[Interval]:
    return sorted((iv for iv in rows if iv.version == 1), key=lambda iv: iv.start)


# --- alignment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2025, 3, 1, 0, 0, tzinfo=UTC), datetime(2025, 3, 1, 0, 0, tzinfo=UTC)),
        (
            datetime(2025, 3, 1, 0, 14, 59, 999999, tzinfo=UTC),
            datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
        ),
        (datetime(2025, 3, 1, 0, 15, tzinfo=UTC), datetime(2025, 3, 1, 0, 15, tzinfo=UTC)),
        # A meter in Asia/Kolkata (UTC+05:30): boundaries are still UTC quarter hours.
        (
            datetime.fromisoformat("2025-03-01T05:50:00+05:30"),
            datetime(2025, 3, 1, 0, 15, tzinfo=UTC),
        ),
    ],
)
def test_floor_boundary_is_utc_aligned(when: datetime, expected: datetime) -> None:
    got = floor_boundary(when, IV)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


def test_consecutive_reads_give_one_actual_interval_with_the_multiplier_applied() -> None:
    s = _series(multiplier=Decimal(40))
    assert s.read(_read(0, "1000.00")).intervals == ()
    out = s.read(_read(1, "1000.37"))
    (iv,) = out.intervals
    assert (iv.start, iv.end) == (T0, T0 + IV)
    assert iv.value == Decimal("14.80")
    assert iv.quality is Quality.ACTUAL and iv.version == 1 and iv.source is Source.POLL
    assert out.anomalies == ()


def test_a_retry_within_the_same_slot_adds_nothing() -> None:
    s = _series()
    s.read(_read(0, "5"))
    s.read(_read(1, "6"))
    assert s.read(_read(1, "6.01", late_s=200)).intervals == ()
    assert s.read(_read(0, "7")).intervals == ()  # out of order


# --- gaps --------------------------------------------------------------------------


def test_a_missed_read_stores_missing_then_the_energy_is_kept_as_a_span() -> None:
    s = _series()
    s.read(_read(0, "100.00"))
    s.read(_read(1, "101.00"))
    missed = s.missed(T0 + 2 * IV)  # the read at 00:30 failed
    assert [(iv.start, iv.quality, iv.value) for iv in missed.intervals] == [
        (T0 + IV, Quality.MISSING, None)
    ]
    assert s.missed(T0 + 3 * IV).intervals[0].start == T0 + 2 * IV
    assert s.missed(T0 + 3 * IV).intervals == ()  # said once
    out = s.read(_read(4, "104.50"))
    *missing, span = out.intervals
    assert [iv.start for iv in missing] == [T0 + 3 * IV]  # the only slot without a row
    assert all(iv.quality is Quality.MISSING and iv.value is None for iv in missing)
    assert (span.start, span.end) == (T0 + IV, T0 + 4 * IV)
    assert span.duration == 3 * IV
    assert span.value == Decimal("3.50")
    assert span.version == 2 and span.reason_codes == (SPAN_REASON,)
    # Back to normal afterwards.
    (nxt,) = s.read(_read(5, "105.00")).intervals
    assert nxt.version == 1 and nxt.quality is Quality.ACTUAL


def test_a_gap_found_only_when_the_next_read_arrives_still_gets_missing_rows() -> None:
    rows = list(normalize_reads([_read(0, "1"), _read(3, "4")], interval=IV).intervals)
    assert [iv.quality for iv in _originals(rows)] == [Quality.MISSING] * 3
    assert _total(rows) == Decimal(3)


def test_a_late_read_after_missing_was_stored_becomes_a_one_slot_span() -> None:
    s = _series()
    s.read(_read(0, "1"))
    s.missed(T0 + IV)
    (span,) = s.read(_read(1, "2", late_s=600)).intervals
    assert span.version == 2 and span.duration == IV and span.value == Decimal(1)


def test_missed_before_the_first_read_produces_nothing() -> None:
    assert _series().missed(T0 + IV).intervals == ()


def test_restored_anchor_resumes_after_a_restart() -> None:
    s = SeriesNormalizer(
        meter_id=1, channel="1.8.0", interval=IV, anchor=Anchor(slot=T0, value=Decimal("9"))
    )
    (iv,) = s.read(_read(1, "9.25")).intervals
    assert iv.value == Decimal("0.25")


# --- decreases, rollover, implausible deltas, exchanges -------------------------------


def test_rollover_at_the_register_capacity() -> None:
    s = _series(capacity=Decimal(1000000), max_kw=Decimal(20))
    s.read(_read(0, "999999.50"))
    out = s.read(_read(1, "0.75"))
    (iv,) = out.intervals
    assert iv.value == Decimal("1.25")
    (note,) = out.anomalies
    assert note.kind == "register_rollover" and note.severity is Severity.INFO


def test_rollover_without_a_power_limit_needs_values_near_the_ends() -> None:
    s = _series(capacity=Decimal(1000000))
    s.read(_read(0, "999999.50"))
    assert s.read(_read(1, "0.75")).intervals[0].value == Decimal("1.25")
    s2 = _series(capacity=Decimal(1000000))
    s2.read(_read(0, "500000"))
    out = s2.read(_read(1, "10"))
    assert out.anomalies[0].kind == "register_decrease"


def test_a_decrease_that_is_no_rollover_is_an_anomaly_never_a_negative_interval() -> None:
    s = _series(capacity=Decimal(1000000), max_kw=Decimal(20))
    s.read(_read(0, "1234.56"))
    out = s.read(_read(1, "1200.00"))
    assert [(iv.quality, iv.value) for iv in out.intervals] == [(Quality.MISSING, None)]
    (anomaly,) = out.anomalies
    assert anomaly.kind == "register_decrease" and anomaly.severity is Severity.WARNING
    assert anomaly.evidence["previous"] == "1234.56" and anomaly.meter_id == 1
    # The series restarts from the new value.
    (iv,) = s.read(_read(2, "1200.10")).intervals
    assert iv.value == Decimal("0.10")


def test_a_huge_increase_is_an_anomaly() -> None:
    s = _series(max_kw=Decimal(20))  # at most 5 kWh a quarter hour
    s.read(_read(0, "10"))
    out = s.read(_read(1, "15.01"))
    assert out.intervals[0].quality is Quality.MISSING
    assert out.anomalies[0].kind == "implausible_delta"
    s2 = _series(max_kw=Decimal(20))
    s2.read(_read(0, "10"))
    assert s2.read(_read(1, "15.00")).intervals[0].value == Decimal(5)


def test_a_meter_exchange_splits_the_series() -> None:
    s = _series()
    s.read(_read(0, "5000"), identity="000000000001/m1")
    out = s.read(_read(1, "0.10"), identity="000000000002/m1")
    assert [iv.quality for iv in out.intervals] == [Quality.MISSING]
    assert out.anomalies[0].kind == "meter_exchange"
    (iv,) = s.read(_read(2, "0.30"), identity="000000000002/m1").intervals
    assert iv.value == Decimal("0.20")


@pytest.mark.parametrize(
    ("unit", "expected"), [("V", 100), ("A", 40), ("kW", 4000), ("kvar", 4000), ("Hz", 1), ("", 1)]
)
def test_sample_multiplier(unit: str, expected: int) -> None:
    assert sample_multiplier(unit, Decimal(40), Decimal(100)) == expected


# --- properties --------------------------------------------------------------------

_steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=4),  # slots to the next read (>1: a gap)
        st.integers(min_value=0, max_value=500),  # register increase in 0.01 kWh
        st.booleans(),  # a failed read was reported in between
    ),
    min_size=1,
    max_size=40,
)
_multipliers = st.sampled_from([Decimal(1), Decimal(40), Decimal("0.5"), Decimal(1200)])


def _run(
    start: int, steps: list[tuple[int, int, bool]], multiplier: Decimal, capacity: int | None
) -> tuple[list[Interval], list[str], int, int]:
    s = _series(
        multiplier=multiplier,
        capacity=None if capacity is None else Decimal(capacity) / 100,
        max_kw=Decimal(100),
    )
    rows: list[Interval] = []
    kinds: list[str] = []
    slot, raw = 0, start

    def value(r: int) -> Decimal:
        return Decimal(r % capacity if capacity else r) / 100

    out = s.read(_read(0, value(raw)))
    for gap, increase, reported in steps:
        if reported and gap > 1:
            rows += s.missed(T0 + (slot + 1) * IV).intervals
        slot += gap
        raw += increase
        out = s.read(_read(slot, value(raw)))
        rows += out.intervals
        kinds += [a.kind for a in out.anomalies]
    return rows, kinds, raw - start, slot


@settings(max_examples=200, deadline=None)
@given(start=st.integers(min_value=0, max_value=10**8), steps=_steps, multiplier=_multipliers)
def test_sum_of_intervals_equals_register_delta_times_multiplier(
    start: int, steps: list[tuple[int, int, bool]], multiplier: Decimal
) -> None:
    rows, kinds, delta, last = _run(start, steps, multiplier, None)
    assert kinds == []
    assert _total(rows) == Decimal(delta) / 100 * multiplier
    # One original row per slot, contiguous, no negatives; gaps are MISSING, never zero.
    originals = _originals(rows)
    assert [iv.start for iv in originals] == [T0 + i * IV for i in range(last)]
    assert all(iv.duration == IV for iv in originals)
    assert all(iv.value is None or iv.value >= 0 for iv in rows)
    assert all((iv.quality is Quality.MISSING) == (iv.value is None) for iv in rows)
    spans = [iv for iv in rows if iv.version == 2]
    covered = sum((iv.duration for iv in spans), timedelta()) + IV * sum(
        1 for iv in originals if iv.quality is Quality.ACTUAL
    )
    assert covered == last * IV  # every slot's energy is in exactly one row


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=99_990_000, max_value=99_999_999),
    steps=_steps,
    multiplier=_multipliers,
)
def test_rollover_keeps_the_total_exact(
    start: int, steps: list[tuple[int, int, bool]], multiplier: Decimal
) -> None:
    # A XXXXXX.XX register: it wraps at 1,000,000.00 kWh.
    rows, kinds, delta, _ = _run(start, steps, multiplier, 100_000_000)
    assert set(kinds) <= {"register_rollover"}
    assert _total(rows) == Decimal(delta) / 100 * multiplier
    assert all(iv.value is None or iv.value >= 0 for iv in rows)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=30),
    multiplier=_multipliers,
)
def test_arbitrary_register_values_never_give_a_negative_or_implausible_interval(
    values: list[int], multiplier: Decimal
) -> None:
    reads = [_read(i, Decimal(v) / 100) for i, v in enumerate(values)]
    policy = ChannelPolicy(multiplier=multiplier, capacity=Decimal(1000000), max_kw=Decimal(100))
    out = normalize_reads(reads, interval=IV, policy=policy)
    limit = Decimal(25) * multiplier  # 100 kW for a quarter hour
    for iv in out.intervals:
        assert iv.value is None or Decimal(0) <= iv.value <= limit * (iv.duration // IV)
    # Every decrease is either a stored rollover or an anomaly.
    decreases = sum(1 for a, b in itertools.pairwise(values) if b < a)
    assert decreases == sum(
        1 for a in out.anomalies if a.kind in {"register_rollover", "register_decrease"}
    )
    # Every slot has exactly one original row.
    assert len(_originals(list(out.intervals))) == len(values) - 1
