"""Interval versions written after collection: operator edits and load-profile backfills.

Originals are never overwritten: each edit or backfill is the next version of
its interval (highest stored version + 1), with who, when (``recorded_at``) and
why, and the ``latest`` view billing reads shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from amigate.domain import SYSTEM_USER, Interval, Quality, Source
from amigate.errors import ReadingRejected
from amigate.storage import Store
from amigate.storage.vee_queries import version_numbers
from amigate.vee.quality import METHODS, REASONS

__all__ = ["edit_interval", "record_backfill"]


def _next_versions(store: Store, meter_id: int, channel: str, starts: Sequence[datetime],
                   span: timedelta) -> dict[int, int]:  # fmt: skip
    if not starts:
        return {}
    found = version_numbers(
        store.engine, meter_id, store.channel_id(channel), min(starts), max(starts) + span
    )
    return {int(s.timestamp()): found.get(int(s.timestamp()), 1) + 1 for s in starts}


def edit_interval(
    store: Store,
    *,
    meter_id: int,
    channel: str,
    start: datetime,
    end: datetime,
    value: Decimal,
    by: str,
    reason: str,
    comment: str | None = None,
) -> Interval:
    """Store an operator's value for one interval as its next version.

    Args:
        store: the store.
        meter_id: the meter.
        channel: the channel code.
        start: the interval start (aware).
        end: the interval end (aware).
        value: the value the operator sets.
        by: who edits (a user name).
        reason: why (required; kept with the version).
        comment: optional free text, kept after the reason.

    Returns:
        The stored version.

    Raises:
        ReadingRejected: no reason, no user, a user named like the system, or a
            value that cannot be stored exactly.
    """
    if not reason.strip():
        raise ReadingRejected("an interval edit needs a reason")
    if not by.strip() or by == SYSTEM_USER:
        raise ReadingRejected(f"an interval edit needs the operator's name (not {SYSTEM_USER!r})")
    version = _next_versions(store, meter_id, channel, [start], end - start)[int(start.timestamp())]
    text = reason.strip() if comment is None else f"{reason.strip()}: {comment}"
    edit = Interval(
        meter_id=meter_id, channel=channel, start=start, end=end, value=value,
        quality=Quality.SUBSTITUTED, method=METHODS["agreed"].number,
        reason_codes=(REASONS["edited"].iec,), version=version, source=Source.MANUAL,
        created_by=by, comment=text,
    )  # fmt: skip
    store.ingest_intervals([edit])
    return edit


def record_backfill(store: Store, intervals: Sequence[Interval]) -> list[Interval]:
    """Store actual intervals read later (a meter's load profile) over missing or estimated ones.

    Each becomes the next version of its interval with quality ``ACTUAL`` and
    source ``BACKFILL``, so it supersedes any estimate in the latest view.

    Args:
        store: the store.
        intervals: actual intervals of one or more series (any version given is ignored).

    Returns:
        The versions stored.
    """
    by_series: dict[tuple[int, str], list[Interval]] = {}
    for iv in intervals:
        if iv.value is None:
            raise ReadingRejected("a backfilled interval must have a value")
        by_series.setdefault((iv.meter_id, iv.channel), []).append(iv)
    out: list[Interval] = []
    for (meter_id, channel), items in by_series.items():
        latest = {
            iv.start: iv for iv in store.intervals(
                meter_id, channel, min(i.start for i in items),
                max(i.start for i in items) + timedelta(seconds=1),
            )
        }  # fmt: skip
        todo = [
            iv for iv in items
            if not (iv.start in latest and latest[iv.start].quality is Quality.ACTUAL
                    and latest[iv.start].value == iv.value and latest[iv.start].end == iv.end)
        ]  # fmt: skip
        versions = _next_versions(store, meter_id, channel, [i.start for i in todo],
                                  timedelta(seconds=1))  # fmt: skip
        for iv in todo:
            out.append(Interval(
                meter_id=meter_id, channel=channel, start=iv.start, end=iv.end, value=iv.value,
                quality=Quality.ACTUAL, reason_codes=(REASONS["backfilled"].iec,),
                version=versions[int(iv.start.timestamp())], source=Source.BACKFILL,
            ))  # fmt: skip
    store.ingest_intervals(out)
    return out
