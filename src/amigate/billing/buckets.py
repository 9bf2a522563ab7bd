"""Local-time buckets (hour, day, month) and the aggregation of intervals into them (pure).

Buckets follow the wall clock of a timezone: a day bucket starts at local
midnight, a month bucket at local midnight of the first. TimescaleDB's
``time_bucket(width, ts, timezone)`` gives the same starts; SQLite has no such
function, so its intervals are bucketed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from amigate.domain import Quality

Unit = Literal["hour", "day", "month"]
#: ``time_bucket`` widths of each unit.
WIDTHS: dict[Unit, str] = {"hour": "1 hour", "day": "1 day", "month": "1 month"}
_ACTUAL, _MISSING = int(Quality.ACTUAL), int(Quality.MISSING)


@dataclass
class Bucket:
    """Aggregated intervals whose start falls in ``[start, end)``."""

    start: datetime
    end: datetime
    value: int = 0
    with_value: int = 0
    missing: int = 0
    not_actual: int = 0
    covered_s: int = 0

    def completeness(self, low: datetime, high: datetime) -> float:
        """Covered share of the part of the bucket inside ``[low, high)``."""
        span = (min(self.end, high) - max(self.start, low)).total_seconds()
        return 0.0 if span <= 0 else min(1.0, self.covered_s / span)


def floor_local(when: datetime, unit: Unit, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the local bucket that contains ``when``."""
    local = when.astimezone(zone)
    if unit == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    elif unit == "day":
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        local = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return local.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC)


def next_local(start: datetime, unit: Unit, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the bucket after the one starting at ``start``."""
    if unit == "hour":
        return start + timedelta(hours=1)
    local = start.astimezone(zone).replace(tzinfo=None)
    if unit == "day":
        local += timedelta(days=1)
    else:
        local = local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    return local.replace(tzinfo=zone).astimezone(UTC)


def buckets(start: datetime, end: datetime, unit: Unit, zone: ZoneInfo) -> Iterator[Bucket]:
    """Every bucket that overlaps ``[start, end)``, in order."""
    at = floor_local(start, unit, zone)
    while at < end:
        following = next_local(at, unit, zone)
        yield Bucket(at, following)
        at = following


def aggregate(
    rows: Iterable[tuple[datetime, int, int | None, int]],
    start: datetime,
    end: datetime,
    unit: Unit,
    zone: ZoneInfo,
) -> list[Bucket]:
    """Aggregate ``(start, duration_s, value, quality)`` rows into local buckets.

    Every bucket overlapping ``[start, end)`` is returned, empty ones included.
    """
    out = list(buckets(start, end, unit, zone))
    index = 0
    for ts, duration, value, quality in rows:
        while index < len(out) - 1 and ts >= out[index].end:
            index += 1
        bucket = out[index]
        if value is None or quality == _MISSING:
            bucket.missing += 1
            continue
        bucket.value += value
        bucket.with_value += 1
        bucket.covered_s += duration
        if quality != _ACTUAL:
            bucket.not_actual += 1
    return out
