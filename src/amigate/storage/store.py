"""The storage API the rest of amigate uses: meters, channels, bulk ingest and series queries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, and_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amigate.domain import (
    IngestResult,
    Interval,
    Meter,
    MeterRole,
    MeterStatus,
    Protocol,
    Quality,
    RegisterRead,
    Sample,
    Source,
    from_micro,
    to_micro,
)
from amigate.errors import StorageError
from amigate.storage.engine import translate_errors
from amigate.storage.ingest import INTERVALS, REGISTER_READS, SAMPLES, Row, ingest_rows, utcnow
from amigate.storage.models import ChannelRow, IntervalRow, MeterRow, RegisterReadRow, SampleRow

VersionSelector = Literal["latest", "original", "all"]


class Store:
    """Repository over one database (SQLite or PostgreSQL/TimescaleDB)."""

    def __init__(self, engine: Engine) -> None:
        """Wrap ``engine``; the schema must already be migrated."""
        self.engine = engine
        self._channel_ids: dict[str, int] = {}
        self._channel_codes: dict[int, str] = {}

    # --- meters -----------------------------------------------------------------

    def add_meter(self, meter: Meter) -> Meter:
        """Store a new meter and return it with its id.

        Raises:
            StorageError: a meter with the same protocol, bus and address exists.
        """
        now = utcnow()
        row = MeterRow(
            address=meter.address, protocol=str(meter.protocol), model=meter.model, bus=meter.bus,
            service_point=meter.service_point, ct_ratio=meter.ct_ratio, pt_ratio=meter.pt_ratio,
            rated_voltage=meter.rated_voltage, rated_current=meter.rated_current,
            max_current=meter.max_current, timezone=meter.timezone,
            transformer_area=meter.transformer_area, role=str(meter.role),
            status=str(meter.status), created_at=now, updated_at=now,
        )  # fmt: skip
        try:
            with translate_errors(self.engine), Session(self.engine) as session, session.begin():
                session.add(row)
                session.flush()
                return _meter(row)
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StorageError(
                    f"a {meter.protocol} meter with address {meter.address} is already on bus "
                    f"{meter.bus!r}"
                ) from exc
            raise

    def meters(self) -> list[Meter]:
        """All meters, by id."""
        with translate_errors(self.engine), Session(self.engine) as session:
            return [_meter(r) for r in session.scalars(select(MeterRow).order_by(MeterRow.id))]

    # --- channels ---------------------------------------------------------------

    def channel_id(self, code: str) -> int:
        """The small integer id of a channel code, registering the code on first use."""
        cached = self._channel_ids.get(code)
        if cached is not None:
            return cached
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with translate_errors(self.engine), self.engine.begin() as conn:
            conn.execute(
                dialect.insert(ChannelRow.__table__)
                .values(code=code)
                .on_conflict_do_nothing(index_elements=["code"])
            )
            ident = conn.execute(select(ChannelRow.id).where(ChannelRow.code == code)).scalar_one()
        self._channel_ids[code] = ident
        self._channel_codes[ident] = code
        return ident

    def channel_code(self, ident: int) -> str:
        """The code of a channel id."""
        if ident not in self._channel_codes:
            with translate_errors(self.engine), self.engine.connect() as conn:
                code = conn.execute(select(ChannelRow.code).where(ChannelRow.id == ident)).scalar_one()
            self._channel_codes[ident] = code
            self._channel_ids[code] = ident
        return self._channel_codes[ident]

    # --- ingest -------------------------------------------------------------------

    def ingest_intervals(self, intervals: Iterable[Interval]) -> IngestResult:
        """Store intervals idempotently; a higher version of a stored interval is added beside it."""
        now = utcnow()
        rows: list[Row] = [
            (
                iv.meter_id, self.channel_id(iv.channel), iv.start, iv.version,
                int((iv.end - iv.start).total_seconds()),
                None if iv.value is None else to_micro(iv.value), int(iv.quality), iv.method,
                ",".join(iv.reason_codes) or None, int(iv.source), now, iv.created_by, iv.comment,
            )
            for iv in intervals
        ]  # fmt: skip
        return ingest_rows(self.engine, INTERVALS, rows)

    def ingest_register_reads(self, reads: Iterable[RegisterRead]) -> IngestResult:
        """Store register reads idempotently."""
        rows: list[Row] = [
            (
                r.meter_id, self.channel_id(r.channel), r.read_at, to_micro(r.value),
                r.collected_at, int(r.source),
                None if r.clock_offset_s is None else round(r.clock_offset_s * 1000),
            )
            for r in reads
        ]  # fmt: skip
        return ingest_rows(self.engine, REGISTER_READS, rows)

    def ingest_samples(self, samples: Iterable[Sample]) -> IngestResult:
        """Store instantaneous samples idempotently."""
        rows: list[Row] = [
            (s.meter_id, self.channel_id(s.channel), s.at, to_micro(s.value)) for s in samples
        ]
        return ingest_rows(self.engine, SAMPLES, rows)

    # --- queries ------------------------------------------------------------------

    def intervals(
        self,
        meter_id: int,
        channel: str,
        start: datetime,
        end: datetime,
        *,
        version: VersionSelector = "latest",
    ) -> list[Interval]:
        """Intervals of one channel starting in ``[start, end)``, by start time.

        Args:
            meter_id: the meter.
            channel: the channel code.
            start: first start time included (aware).
            end: first start time excluded (aware).
            version: ``latest`` (what billing sees), ``original`` (version 1, as read),
                or ``all`` (every version, oldest first within a start time).
        """
        cid = self.channel_id(channel)
        t = IntervalRow
        where = and_(t.meter_id == meter_id, t.channel_id == cid, t.ts >= start, t.ts < end)
        query = select(t).where(where)
        if version == "original":
            query = query.where(t.version == 1)
        query = query.order_by(IntervalRow.ts, IntervalRow.version)
        with translate_errors(self.engine), Session(self.engine) as session:
            found = [self._interval(r, channel) for r in session.scalars(query)]
        if version != "latest":
            return found
        # Rows come ordered by (start, version): the last one of each start wins.
        latest: dict[datetime, Interval] = {iv.start: iv for iv in found}
        return list(latest.values())

    def register_reads(
        self, meter_id: int, channel: str, start: datetime, end: datetime
    ) -> list[RegisterRead]:
        """Register reads of one channel read in ``[start, end)``, by time."""
        cid = self.channel_id(channel)
        t = RegisterReadRow
        query = (
            select(t)
            .where(t.meter_id == meter_id, t.channel_id == cid, t.read_at >= start, t.read_at < end)
            .order_by(t.read_at)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return [
                RegisterRead(
                    meter_id=r.meter_id, channel=channel, read_at=r.read_at,
                    value=from_micro(r.value), collected_at=r.collected_at, source=Source(r.source),
                    clock_offset_s=None if r.clock_offset_ms is None else r.clock_offset_ms / 1000,
                )
                for r in session.scalars(query)
            ]  # fmt: skip

    def samples(self, meter_id: int, channel: str, start: datetime, end: datetime) -> list[Sample]:
        """Samples of one channel taken in ``[start, end)``, by time."""
        cid = self.channel_id(channel)
        t = SampleRow
        query = (
            select(t)
            .where(t.meter_id == meter_id, t.channel_id == cid, t.at >= start, t.at < end)
            .order_by(t.at)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return [
                Sample(meter_id=r.meter_id, channel=channel, at=r.at, value=from_micro(r.value))
                for r in session.scalars(query)
            ]

    def count(self, table: str) -> int:
        """Rows in a series table (for tests, benchmarks and metrics)."""
        allowed = {INTERVALS.name, REGISTER_READS.name, SAMPLES.name, "meters", "clock_checks"}
        if table not in allowed:
            raise StorageError(f"unknown table {table!r}")
        with translate_errors(self.engine), self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def _interval(self, r: IntervalRow, channel: str) -> Interval:
        return Interval(
            meter_id=r.meter_id, channel=channel, start=r.ts,
            end=r.ts + timedelta(seconds=r.duration_s),
            value=None if r.value is None else from_micro(r.value), quality=Quality(r.quality),
            method=r.method, reason_codes=tuple(r.reason_codes.split(",")) if r.reason_codes else (),
            version=r.version, source=Source(r.source), created_by=r.created_by, comment=r.comment,
        )  # fmt: skip


def _meter(row: MeterRow) -> Meter:
    return Meter(
        id=row.id, address=row.address, protocol=Protocol(row.protocol), model=row.model,
        bus=row.bus, service_point=row.service_point, ct_ratio=row.ct_ratio,
        pt_ratio=row.pt_ratio, rated_voltage=row.rated_voltage, rated_current=row.rated_current,
        max_current=row.max_current, timezone=row.timezone,
        transformer_area=row.transformer_area, role=MeterRole(row.role),
        status=MeterStatus(row.status),
    )  # fmt: skip

