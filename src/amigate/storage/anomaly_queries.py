"""Anomaly reads and lifecycle transitions for the API, and operator edits of intervals.

Transitions are single conditional ``UPDATE``s (``WHERE status IN (...)``), so two
operators acting at once cannot both move the same anomaly: the second gets a
conflict. An operator edit is a new interval version (the highest plus one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session

from amigate.domain import AnomalyStatus, Quality, Source
from amigate.errors import StorageError
from amigate.storage.driver_rows import fetch
from amigate.storage.engine import connected, translate_errors
from amigate.storage.feed_queries import record_sqlite
from amigate.storage.id_lists import ids_text
from amigate.storage.ingest import time_encoder, utcnow
from amigate.storage.models import AnomalyRow, IntervalRow, IntervalVersionRow, MeterRow
from amigate.storage.types import to_epoch

_UNRESOLVED = (str(AnomalyStatus.OPEN), str(AnomalyStatus.ACKNOWLEDGED))


@dataclass(frozen=True)
class AnomalyFilter:
    """Equality and time filters of the anomaly list (None: any)."""

    kind: str | None = None
    severity: str | None = None
    status: str | None = None
    meter_id: int | None = None
    area: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def anomalies_page(
    engine: Engine, filters: AnomalyFilter, *, after: int | None, limit: int
) -> list[AnomalyRow]:
    """Anomalies by id after ``after``; ``start``/``end`` keep those overlapping that range.

    ``area`` matches anomalies of the area itself and of meters in it.
    """
    t = AnomalyRow
    query = select(t).order_by(t.id).limit(limit)
    if after is not None:
        query = query.where(t.id > after)
    for column, value in (("kind", filters.kind), ("severity", filters.severity),
                          ("status", filters.status), ("meter_id", filters.meter_id)):  # fmt: skip
        if value is not None:
            query = query.where(getattr(t, column) == value)
    if filters.area is not None:
        in_area = select(MeterRow.id).where(MeterRow.transformer_area == filters.area)
        query = query.where(or_(t.transformer_area == filters.area, t.meter_id.in_(in_area)))
    if filters.end is not None:
        query = query.where(t.start_at < filters.end)
    if filters.start is not None:
        query = query.where(or_(t.end_at.is_(None), t.end_at > filters.start))
    with translate_errors(engine), Session(engine) as session:
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def anomaly(engine: Engine, anomaly_id: int) -> AnomalyRow | None:
    """One anomaly, or None."""
    with translate_errors(engine), Session(engine) as session:
        row = session.get(AnomalyRow, anomaly_id)
        if row is not None:
            session.expunge(row)
        return row


_OPEN_OVERLAPPING = (  # a determinant runs it
    "SELECT meter_id, id FROM anomalies WHERE meter_id IN :ids "
    f"AND status IN ({', '.join(repr(s) for s in _UNRESOLVED)}) "
    "AND start_at < :end AND (end_at IS NULL OR end_at > :start) ORDER BY id"
)


def open_anomalies(
    engine: Engine, meter_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[int]]:
    """Per meter, ids of unresolved anomalies overlapping ``[start, end)``."""
    out: dict[int, list[int]] = {}
    encode = time_encoder(engine)
    params = {"ids": list(meter_ids), "start": encode(start), "end": encode(end)}
    with connected(engine) as conn:
        found = fetch(conn, ids_text(engine, _OPEN_OVERLAPPING), params)
    for meter_id, ident in found:
        if meter_id is not None:
            out.setdefault(meter_id, []).append(ident)
    return out


@dataclass(frozen=True)
class Edit:
    """An operator's correction of one interval."""

    meter_id: int
    channel_id: int
    ts: datetime
    value: int | None
    reason_codes: str
    comment: str
    who: str


def edit_interval(engine: Engine, edit: Edit) -> tuple[int, int, datetime]:
    """Store an operator edit as the next version of an interval.

    Returns:
        ``(version, duration_s, recorded_at)`` of the new version.

    Raises:
        StorageError: no interval starts at that time on that series.
    """
    o, v = IntervalRow, IntervalVersionRow
    key = (o.meter_id == edit.meter_id, o.channel_id == edit.channel_id, o.ts == edit.ts)
    vkey = (v.meter_id == edit.meter_id, v.channel_id == edit.channel_id, v.ts == edit.ts)
    now = utcnow()
    with translate_errors(engine), Session(engine) as session, session.begin():
        duration = session.execute(select(o.duration_s).where(*key)).scalar()
        if duration is None:
            raise StorageError("no interval starts at that time on that meter and channel")
        latest = session.execute(select(func.max(v.version)).where(*vkey)).scalar()
        version = (latest or 1) + 1
        session.add(IntervalVersionRow(
            meter_id=edit.meter_id, channel_id=edit.channel_id, ts=edit.ts, version=version,
            duration_s=duration, value=edit.value,
            quality=int(Quality.MISSING if edit.value is None else Quality.SUBSTITUTED),
            source=int(Source.MANUAL), method=None, reason_codes=edit.reason_codes,
            recorded_at=now, created_by=edit.who, comment=edit.comment,
        ))  # fmt: skip
        if engine.dialect.name == "sqlite":  # PostgreSQL's trigger records it
            session.flush()
            record_sqlite(session.connection().connection.cursor(), "interval_versions",
                          [(edit.meter_id, edit.channel_id, to_epoch(edit.ts))])  # fmt: skip
    return version, duration, now
