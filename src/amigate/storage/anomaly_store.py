"""Anomaly storage: one record per condition, extended while it persists; status lifecycle.

Every producer (collection, clock checks, validation) stores anomalies through
:func:`add_anomalies`. A condition is identified by its kind, meter, transformer
area and subject (a channel or a phase; by default the evidence's ``channel``).
An anomaly reported again is matched against the stored records of its
condition:

* it lies within a stored record's time range (any status): a replay (a spool
  re-drained after a crash, a validation run repeated): nothing changes;
* it touches or overlaps an open or acknowledged record, or starts within
  ``join_gap`` after its end: the condition persists, the record is extended
  (start and end widened, evidence updated, ``occurrences`` counted);
* otherwise it is a new record.

A record whose end is ``None`` is an episode still going on: every later report
of its condition joins it. Status moves open → acknowledged → resolved (or
open → resolved), each step with who and when.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from amigate.domain import Anomaly, AnomalyStatus, Severity
from amigate.errors import AnomalyStateError, StorageError
from amigate.storage.engine import translate_errors
from amigate.storage.ingest import utcnow
from amigate.storage.models import AnomalyRow

__all__ = [
    "DEFAULT_JOIN_GAP",
    "StoredAnomaly",
    "acknowledge",
    "add_anomalies",
    "anomaly_subject",
    "list_anomalies",
    "resolve",
]

#: A report starting within this time after a record's end continues it.
DEFAULT_JOIN_GAP = timedelta(days=1)
_ACTIVE = (str(AnomalyStatus.OPEN), str(AnomalyStatus.ACKNOWLEDGED))
_Key = tuple[str, int | None, str | None, str | None]


@dataclass(frozen=True, kw_only=True)
class StoredAnomaly(Anomaly):
    """An anomaly as stored, with its lifecycle fields."""

    occurrences: int = 1
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    comment: str | None = None


def anomaly_subject(anomaly: Anomaly) -> str | None:
    """The subject that, with kind, meter and area, identifies the anomaly's condition."""
    if anomaly.subject is not None:
        return anomaly.subject
    channel = anomaly.evidence.get("channel")
    return None if channel is None else str(channel)


def add_anomalies(
    engine: Engine,
    anomalies: Sequence[Anomaly],
    *,
    join_gap: timedelta = DEFAULT_JOIN_GAP,
) -> list[int]:
    """Store anomalies, extending the records of conditions that persist.

    Args:
        engine: the database.
        anomalies: the anomalies, in any order.
        join_gap: a report starting at most this long after a record's end continues it.

    Returns:
        The id of the record each anomaly was stored in, in the order given
        (the same id for reports of one persisting condition).
    """
    if not anomalies:
        return []
    groups: dict[_Key, list[int]] = {}
    for index, a in enumerate(anomalies):
        key = (a.kind, a.meter_id, a.transformer_area, anomaly_subject(a))
        groups.setdefault(key, []).append(index)
    ids: list[int] = [0] * len(anomalies)
    now = utcnow()
    with translate_errors(engine), Session(engine) as session, session.begin():
        postgres = engine.dialect.name == "postgresql"
        if not postgres:  # take SQLite's write lock before reading: writers queue up
            session.execute(text("UPDATE anomalies SET id = id WHERE 0"))
        for key in sorted(groups, key=repr):
            if postgres:  # serialise writers of one condition (other writers wait)
                lock = zlib.crc32(repr(key).encode()) - 2**31
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
            rows = _rows_of(session, key)
            order = sorted(groups[key], key=lambda i: anomalies[i].start)
            for index in order:
                row = _merge(session, rows, anomalies[index], key, join_gap, now)
                ids[index] = row.id
    return ids


def _rows_of(session: Session, key: _Key) -> list[AnomalyRow]:
    kind, meter_id, area, subject = key
    t = AnomalyRow
    query = select(t).where(
        t.kind == kind,
        t.meter_id.is_(None) if meter_id is None else t.meter_id == meter_id,
        t.transformer_area.is_(None) if area is None else t.transformer_area == area,
        t.subject.is_(None) if subject is None else t.subject == subject,
    )
    return list(session.scalars(query.order_by(t.start_at, t.id)))


def _merge(
    session: Session,
    rows: list[AnomalyRow],
    new: Anomaly,
    key: _Key,
    join_gap: timedelta,
    now: datetime,
) -> AnomalyRow:
    start = new.start.astimezone(UTC)
    end = None if new.end is None else new.end.astimezone(UTC)
    last = end or start
    for row in rows:  # a replay of what a record already covers
        row_start = _aware(row.start_at)
        row_end = _aware(row.end_at) if row.end_at is not None else None
        ongoing = row_end is None and row.status in _ACTIVE
        if row_start <= start and (ongoing or last <= (row_end or row_start)):
            return row
    for row in reversed(rows):  # the condition persists: extend the newest active record
        if row.status not in _ACTIVE:
            continue
        row_start = _aware(row.start_at)
        row_end = _aware(row.end_at) if row.end_at is not None else None
        if row_end is None or (start <= row_end + join_gap and last >= row_start - join_gap):
            if start < row_start:
                row.start_at = start
            if row_end is not None:
                row.end_at = None if end is None else max(row_end, end)
            if start >= row_start:
                row.evidence = {**(row.evidence or {}), **new.evidence}
            if _rank(new.severity) > _rank(Severity(row.severity)):
                row.severity = str(new.severity)
            row.occurrences = (row.occurrences or 1) + 1
            row.last_seen_at = now
            row.updated_at = now
            session.flush()
            return row
    row = AnomalyRow(
        kind=new.kind, severity=str(new.severity), status=str(new.status),
        meter_id=new.meter_id, transformer_area=new.transformer_area, subject=key[3],
        start_at=start, end_at=end, evidence=dict(new.evidence), created_at=now,
        updated_at=now, last_seen_at=now, occurrences=1,
    )  # fmt: skip
    session.add(row)
    session.flush()
    rows.append(row)
    return row


def _rank(severity: Severity) -> int:
    return [Severity.INFO, Severity.WARNING, Severity.CRITICAL].index(severity)


def acknowledge(
    engine: Engine, anomaly_id: int, *, by: str, comment: str | None = None
) -> AnomalyRow:  # fmt: skip
    """Mark an open anomaly acknowledged by ``by``, now; return it as stored.

    Raises:
        StorageError: no anomaly has that id.
        AnomalyStateError: the anomaly is not open.
    """
    return _transition(engine, anomaly_id, AnomalyStatus.ACKNOWLEDGED, by=by, comment=comment)


def resolve(
    engine: Engine, anomaly_id: int, *, by: str, comment: str | None = None
) -> AnomalyRow:  # fmt: skip
    """Mark an open or acknowledged anomaly resolved by ``by``, now; return it as stored.

    Raises:
        StorageError: no anomaly has that id.
        AnomalyStateError: the anomaly is already resolved.
    """
    return _transition(engine, anomaly_id, AnomalyStatus.RESOLVED, by=by, comment=comment)


def _transition(
    engine: Engine, anomaly_id: int, status: AnomalyStatus, *, by: str, comment: str | None
) -> AnomalyRow:
    allowed = {
        AnomalyStatus.ACKNOWLEDGED: [str(AnomalyStatus.OPEN)],
        AnomalyStatus.RESOLVED: list(_ACTIVE),
    }[status]
    now = utcnow()
    who = (
        {"acknowledged_by": by, "acknowledged_at": now}
        if status is AnomalyStatus.ACKNOWLEDGED
        else {"resolved_by": by, "resolved_at": now}
    )
    if comment is not None:
        who["comment"] = comment
    t = AnomalyRow
    # one conditional UPDATE: of two operators moving the same anomaly, one wins
    query = (
        update(t)
        .where(t.id == anomaly_id, t.status.in_(allowed))
        .values(status=str(status), updated_at=now, **who)
    )
    with translate_errors(engine), Session(engine) as session, session.begin():
        moved = session.execute(query).rowcount == 1  # type: ignore[attr-defined]
        row = session.get(t, anomaly_id)
        if row is None:
            raise StorageError(f"no anomaly {anomaly_id}")
        if not moved:
            raise AnomalyStateError(f"anomaly {anomaly_id} is {row.status}; it cannot be {status}")
        session.flush()
        session.expunge(row)
        return row


def list_anomalies(
    engine: Engine,
    *,
    meter_id: int | None = None,
    transformer_area: str | None = None,
    kind: str | None = None,
    status: AnomalyStatus | None = None,
) -> list[StoredAnomaly]:
    """Stored anomalies matching every filter given, by start time."""
    t = AnomalyRow
    query = select(t)
    if meter_id is not None:
        query = query.where(t.meter_id == meter_id)
    if transformer_area is not None:
        query = query.where(t.transformer_area == transformer_area)
    if kind is not None:
        query = query.where(t.kind == kind)
    if status is not None:
        query = query.where(t.status == str(status))
    with translate_errors(engine), Session(engine) as session:
        return [_stored(r) for r in session.scalars(query.order_by(t.start_at, t.id))]


def _stored(row: AnomalyRow) -> StoredAnomaly:
    fields: dict[str, Any] = {
        "id": row.id, "kind": row.kind, "start": _aware(row.start_at),
        "severity": Severity(row.severity), "meter_id": row.meter_id,
        "transformer_area": row.transformer_area, "subject": row.subject,
        "end": None if row.end_at is None else _aware(row.end_at),
        "status": AnomalyStatus(row.status), "evidence": dict(row.evidence or {}),
        "occurrences": row.occurrences or 1, "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": _maybe(row.acknowledged_at), "resolved_by": row.resolved_by,
        "resolved_at": _maybe(row.resolved_at), "comment": row.comment,
    }  # fmt: skip
    return StoredAnomaly(**fields)


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
