"""Billing determinants of one meter and period, computed from stored values (pure).

Inputs are the latest version of every interval starting in the period (values
in micro-units of primary energy), the register reads at the period's start and
end boundaries (micro-units as the meter reported them), the meter multiplier,
and the open anomalies overlapping the period. Everything is exact: sums are
integers of micro-units, demand and the register delta exact ``Decimal``.

A determinant is ``billable`` only when nothing needs a person's attention:
both boundary reads exist and stand for their boundary (taken in
``[boundary, boundary + interval)``), the interval total
equals the register delta times the multiplier to the last digit, every second
of the period is covered by a value, and no anomaly is open over it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from amigate.domain import Quality
from amigate.tou import TouClassifier

#: Qualities counted as estimated or substituted.
ESTIMATED = frozenset({int(Quality.ESTIMATED), int(Quality.SUBSTITUTED),
                       int(Quality.FINAL_SUBSTITUTE)})  # fmt: skip
_MISSING = int(Quality.MISSING)


@dataclass(frozen=True)
class BoundaryRead:
    """A register read used as a billing start or end read."""

    read_at: datetime
    value: int


@dataclass
class TouTotal:
    """Consumption in one time-of-use period."""

    energy: int = 0
    intervals: int = 0


@dataclass
class Determinant:
    """The billing determinants of one meter over ``[start, end)`` (micro-units).

    Attributes:
        consumption: the sum of the latest interval values.
        register_delta: ``(end read - start read) × multiplier``, or None without both reads.
        difference: ``consumption - register_delta`` (None without both reads).
        tou: consumption per time-of-use period, in schedule order.
        max_demand: the highest average power of one regular interval (micro-kW), and
            ``max_demand_at`` the start of that interval.
        estimated_intervals, estimated_energy: intervals of estimated or substituted quality.
        missing_intervals: intervals stored as missing in the latest view.
        intervals: intervals with a value.
        completeness: the share of the period covered by intervals with a value.
        anomaly_ids: the open (or acknowledged) anomalies overlapping the period.
        reasons: why the determinant is not billable (empty when it is).
    """

    meter_id: int
    start: datetime
    end: datetime
    start_read: BoundaryRead | None
    end_read: BoundaryRead | None
    consumption: int
    register_delta: Decimal | None
    difference: Decimal | None
    tou: dict[str, TouTotal]
    max_demand: Decimal | None
    max_demand_at: datetime | None
    estimated_intervals: int
    estimated_energy: int
    missing_intervals: int
    intervals: int
    completeness: float
    anomaly_ids: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def billable(self) -> bool:
        """Whether the determinant can be billed as is."""
        return not self.reasons


@dataclass
class Totals:
    """What the intervals of one meter and period add up to (micro-units)."""

    tou: dict[str, TouTotal]
    consumption: int = 0
    estimated_intervals: int = 0
    estimated_energy: int = 0
    missing: int = 0
    intervals: int = 0
    covered_s: int = 0
    peak: int | None = None
    peak_at: datetime | None = None

    @classmethod
    def empty(cls, classifier: TouClassifier) -> Totals:
        """Nothing yet, with every period of the schedule at zero."""
        return cls(tou={name: TouTotal() for name in classifier.names})


def accumulate(
    rows: Iterable[tuple[datetime, int, int | None, int]],
    *,
    end: datetime,
    classifier: TouClassifier,
    interval_s: int,
) -> Totals:
    """Add up ``(start, duration_s, value, quality)`` rows (latest versions, by start)."""
    totals = Totals.empty(classifier)
    tou, period_of = totals.tou, classifier.period
    consumption = estimated_n = estimated_e = missing = valued = covered = 0
    peak: int | None = None
    peak_at: datetime | None = None
    end_s = end.timestamp()
    for ts, duration, value, quality in rows:
        if value is None or quality == _MISSING:
            missing += 1
            continue
        valued += 1
        consumption += value
        total = tou[period_of(ts)]
        total.energy += value
        total.intervals += 1
        if quality in ESTIMATED:
            estimated_n += 1
            estimated_e += value
        covered += min(duration, max(0, int(end_s - ts.timestamp())))
        if duration == interval_s and (peak is None or value > peak):
            peak, peak_at = value, ts
    totals.consumption, totals.estimated_intervals, totals.estimated_energy = (
        consumption,
        estimated_n,
        estimated_e,
    )
    totals.missing, totals.intervals, totals.covered_s = missing, valued, covered
    totals.peak, totals.peak_at = peak, peak_at
    return totals


def compute(
    *,
    meter_id: int,
    start: datetime,
    end: datetime,
    rows: Iterable[tuple[datetime, int, int | None, int]],
    start_read: BoundaryRead | None,
    end_read: BoundaryRead | None,
    multiplier: Decimal,
    classifier: TouClassifier,
    interval_s: int,
    anomaly_ids: list[int] | None = None,
) -> Determinant:
    """Compute the determinants of one meter.

    Args:
        meter_id: the meter.
        start: the period start (aware).
        end: the period end, excluded (aware).
        rows: ``(start, duration_s, value, quality)`` of the latest version of each
            interval starting in ``[start, end)``.
        start_read: the register read at the start boundary, if any.
        end_read: the register read at the end boundary, if any.
        multiplier: CT ratio × PT ratio (intervals are primary, registers secondary).
        classifier: the time-of-use classifier.
        interval_s: the configured interval length in seconds.
        anomaly_ids: ids of open anomalies overlapping the period.

    Returns:
        The determinant, with ``reasons`` listing why it is not billable.
    """
    totals = accumulate(rows, end=end, classifier=classifier, interval_s=interval_s)
    return finish(
        meter_id=meter_id, start=start, end=end, totals=totals, start_read=start_read,
        end_read=end_read, multiplier=multiplier, interval_s=interval_s,
        anomaly_ids=anomaly_ids,
    )  # fmt: skip


def finish(
    *,
    meter_id: int,
    start: datetime,
    end: datetime,
    totals: Totals,
    start_read: BoundaryRead | None,
    end_read: BoundaryRead | None,
    multiplier: Decimal,
    interval_s: int,
    anomaly_ids: list[int] | None = None,
) -> Determinant:
    """The determinant of ``totals``: register delta, demand, completeness and reasons."""
    seconds = end.timestamp() - start.timestamp()  # elapsed, also across a DST change
    delta = difference = None
    reasons: list[str] = []
    if start_read is None:
        reasons.append("no_start_read")
    elif not _at_boundary(start_read, start, interval_s):
        reasons.append("start_read_not_at_boundary")
    if end_read is None:
        reasons.append("no_end_read")
    elif not _at_boundary(end_read, end, interval_s):
        reasons.append("end_read_not_at_boundary")
    if start_read is not None and end_read is not None:
        delta = (end_read.value - start_read.value) * multiplier
        difference = totals.consumption - delta
        if difference != 0:
            reasons.append("register_mismatch")
    if totals.covered_s < seconds:
        reasons.append("incomplete")
    if anomaly_ids:
        reasons.append("open_anomalies")
    peak = totals.peak
    demand = None if peak is None else Decimal(peak) * 3600 / interval_s
    return Determinant(
        meter_id=meter_id, start=start, end=end, start_read=start_read, end_read=end_read,
        consumption=totals.consumption, register_delta=delta, difference=difference,
        tou=totals.tou, max_demand=demand, max_demand_at=totals.peak_at,
        estimated_intervals=totals.estimated_intervals,
        estimated_energy=totals.estimated_energy, missing_intervals=totals.missing,
        intervals=totals.intervals,
        completeness=min(1.0, totals.covered_s / seconds) if seconds > 0 else 0.0,
        anomaly_ids=sorted(anomaly_ids or []), reasons=reasons,
    )  # fmt: skip


def boundary_window(boundary: datetime, interval_s: int) -> tuple[datetime, datetime]:
    """The times a read attributed to ``boundary`` may have been taken: ``[b, b + interval)``.

    Reads are scheduled just after each boundary and stand for the register at it
    (see ``amigate.normalize``).
    """
    return boundary, boundary + timedelta(seconds=interval_s)


def _at_boundary(read: BoundaryRead, boundary: datetime, interval_s: int) -> bool:
    low, high = boundary_window(boundary, interval_s)
    return low <= read.read_at < high
