"""Store queries for meter clocks: clock checks and clock_offset anomaly episodes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from amigate.domain import Anomaly, AnomalyStatus, ClockCheck, IngestResult, Severity
from amigate.errors import StorageError
from amigate.storage.engine import translate_errors
from amigate.storage.ingest import utcnow
from amigate.storage.models import AnomalyRow, ClockCheckRow

__all__ = ["ClockQueries"]


class ClockQueries:
    """The meter-clock part of :class:`amigate.storage.store.Store`."""

    engine: Engine

    def ingest_clock_checks(self, checks: Sequence[ClockCheck]) -> IngestResult:
        """Store clock checks; a check already stored under (meter, time) is kept as is."""
        if not checks:
            return IngestResult(offered=0, inserted=0, conflicts=0)
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        rows = [
            {"meter_id": c.meter_id, "checked_at": c.checked_at.astimezone(UTC),
             "offset_ms": round(c.offset_s * 1000), "corrected": c.corrected}
            for c in checks
        ]  # fmt: skip
        query = (
            dialect.insert(ClockCheckRow.__table__)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["meter_id", "checked_at"])
        )
        with translate_errors(self.engine), self.engine.begin() as conn:
            inserted = conn.execute(query).rowcount
        inserted = max(0, inserted or 0)
        return IngestResult(offered=len(rows), inserted=inserted, conflicts=len(rows) - inserted)

    def latest_clock_checks(self, meter_ids: Sequence[int] | None = None) -> dict[int, ClockCheck]:
        """The latest clock check of each meter (of ``meter_ids``, or of all meters)."""
        t = ClockCheckRow
        newest = select(t.meter_id, func.max(t.checked_at).label("at")).group_by(t.meter_id)
        if meter_ids is not None:
            newest = newest.where(t.meter_id.in_(list(meter_ids)))
        sub = newest.subquery()
        query = select(t).join(
            sub, (t.meter_id == sub.c.meter_id) & (t.checked_at == sub.c.at)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return {
                r.meter_id: ClockCheck(
                    meter_id=r.meter_id, checked_at=_aware(r.checked_at),
                    offset_s=r.offset_ms / 1000, corrected=bool(r.corrected),
                )
                for r in session.scalars(query)
            }  # fmt: skip

    def clock_checks(self, meter_id: int) -> list[ClockCheck]:
        """Every clock check of a meter, oldest first."""
        t = ClockCheckRow
        query = select(t).where(t.meter_id == meter_id).order_by(t.checked_at)
        with translate_errors(self.engine), Session(self.engine) as session:
            return [
                ClockCheck(meter_id=r.meter_id, checked_at=_aware(r.checked_at),
                           offset_s=r.offset_ms / 1000, corrected=bool(r.corrected))
                for r in session.scalars(query)
            ]  # fmt: skip

    def open_anomalies(self, kind: str, meter_ids: Sequence[int] | None = None) -> list[Anomaly]:
        """Anomalies of ``kind`` that are open and not ended (an episode still going on)."""
        t = AnomalyRow
        query = select(t).where(
            t.kind == kind, t.status == str(AnomalyStatus.OPEN), t.end_at.is_(None)
        )
        if meter_ids is not None:
            query = query.where(t.meter_id.in_(list(meter_ids)))
        with translate_errors(self.engine), Session(self.engine) as session:
            return [_anomaly(r) for r in session.scalars(query.order_by(t.start_at, t.id))]

    def update_anomaly(
        self, anomaly_id: int, *, evidence: dict[str, Any], end: datetime | None = None
    ) -> None:
        """Extend an anomaly episode: new evidence, and its end once the condition is over.

        Raises:
            StorageError: no anomaly has that id.
        """
        with translate_errors(self.engine), Session(self.engine) as session, session.begin():
            row = session.get(AnomalyRow, anomaly_id)
            if row is None:
                raise StorageError(f"no anomaly {anomaly_id}")
            row.evidence = dict(evidence)
            row.end_at = end
            row.updated_at = utcnow()


def _anomaly(row: AnomalyRow) -> Anomaly:
    return Anomaly(
        id=row.id, kind=row.kind, start=_aware(row.start_at), severity=Severity(row.severity),
        meter_id=row.meter_id, transformer_area=row.transformer_area,
        end=None if row.end_at is None else _aware(row.end_at),
        status=AnomalyStatus(row.status), evidence=dict(row.evidence or {}),
    )  # fmt: skip


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
