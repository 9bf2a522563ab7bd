"""Anomaly reads and lifecycle transitions for the API, and operator edits of intervals.

Transitions are single conditional ``UPDATE``s (``WHERE status IN (...)``), so two
operators acting at once cannot both move the same anomaly: the second gets a
conflict. An operator edit is a new interval version (the highest plus one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, func, or_, select
from sqlalchemy.orm import Session

from amigate.domain import AnomalyStatus, Quality, Source
from amigate.errors import StorageError
from amigate.storage.engine import connected, translate_errors
from amigate.storage.feed_queries import record_sqlite
from amigate.storage.id_lists import DIALECTS, ids_match
from amigate.storage.ingest import utcnow
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


_A = AnomalyRow
_OPEN_OVERLAPPING = {  # built once per dialect: a determinant runs it
    dialect: select(_A.meter_id, _A.id).where(
        ids_match(_A.meter_id, dialect), _A.status.in_(_UNRESOLVED),
        _A.start_at < bindparam("end", type_=_A.start_at.type),
        or_(_A.end_at.is_(None), _A.end_at > bindparam("start", type_=_A.end_at.type)),
    ).order_by(_A.id)
    for dialect in DIALECTS
}  # fmt: skip


def open_anomalies(
    engine: Engine, meter_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, list[int]]:
    """Per meter, ids of unresolved anomalies overlapping ``[start, end)``."""
    out: dict[int, list[int]] = {}
    params = {"ids": list(meter_ids), "start": start, "end": end}
    with connected(engine) as conn:
        for meter_id, ident in conn.execute(_OPEN_OVERLAPPING[engine.dialect.name], params):
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
