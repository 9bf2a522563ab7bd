"""Queries about gaps: the spans still standing in for intervals a meter may still hold.

A span is the energy across a gap kept in one row (a later version with the
reason code ``gap-span`` at the gap's first slot, see ``amigate.normalize``). A
span is *open* while no later version supersedes it: backfill has not replaced it
with the meter's own interval records yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased

from amigate.domain import Interval, Quality, Source, from_micro
from amigate.storage.engine import translate_errors
from amigate.storage.models import ChannelRow, IntervalVersionRow

__all__ = ["SPAN_REASON", "backfilled_counts", "open_spans"]

#: The reason code of a span row (``amigate.normalize.SPAN_REASON``).
SPAN_REASON = "gap-span"


def open_spans(
    engine: Engine, meter_ids: Sequence[int], since: datetime, *, channels: Sequence[str] = ()
) -> list[Interval]:
    """The open spans of ``meter_ids`` that start at or after ``since``, oldest first.

    Args:
        engine: the database.
        meter_ids: the meters.
        since: the oldest span start of interest (older ones are beyond the meters' memory).
        channels: only these channel codes (default: all).

    Raises:
        StorageUnavailable: the database is away.
    """
    if not meter_ids:
        return []
    v, later = IntervalVersionRow, aliased(IntervalVersionRow)
    superseded = exists().where(
        and_(
            later.meter_id == v.meter_id, later.channel_id == v.channel_id, later.ts == v.ts,
            later.version > v.version,
        )
    )  # fmt: skip
    query = (
        select(v, ChannelRow.code)
        .join(ChannelRow, ChannelRow.id == v.channel_id)
        .where(
            v.meter_id.in_(list(meter_ids)),
            v.ts >= since,
            v.reason_codes.contains(SPAN_REASON),
            ~superseded,
        )
        .order_by(v.ts, v.meter_id, v.channel_id)
    )
    if channels:
        query = query.where(ChannelRow.code.in_(list(channels)))
    with translate_errors(engine), Session(engine) as session:
        return [
            Interval(
                meter_id=r.meter_id, channel=code, start=r.ts,
                end=r.ts + timedelta(seconds=r.duration_s),
                value=None if r.value is None else from_micro(r.value), quality=Quality(r.quality),
                source=Source(r.source), version=r.version,
                reason_codes=tuple((r.reason_codes or "").split(",")),
            )
            for r, code in session.execute(query)
        ]  # fmt: skip


def backfilled_counts(engine: Engine, since: datetime) -> dict[int, int]:
    """Per meter, the interval versions stored by backfill starting at or after ``since``."""
    v = IntervalVersionRow
    query = (
        select(v.meter_id, func.count())
        .where(v.ts >= since, v.source == int(Source.BACKFILL))
        .group_by(v.meter_id)
    )
    with translate_errors(engine), Session(engine) as session:
        return {int(m): int(n) for m, n in session.execute(query)}
