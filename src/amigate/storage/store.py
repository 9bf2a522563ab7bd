"""The storage API the rest of amigate uses: meters, channels, bulk ingest and series queries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amigate.domain import (
    MAX_MICRO,
    MICRO_SCALE,
    MIN_MICRO,
    SYSTEM_USER,
    Anomaly,
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
from amigate.errors import ReadingRejected, StorageError
from amigate.storage.anomaly_store import add_anomalies
from amigate.storage.clock_queries import ClockQueries
from amigate.storage.engine import translate_errors
from amigate.storage.ingest import (
    INTERVAL_VERSIONS,
    INTERVALS,
    REGISTER_READS,
    SAMPLES,
    ingest_rows,
    time_encoder,
    utcnow,
)
from amigate.storage.models import (
    ChannelRow,
    IntervalRow,
    IntervalVersionRow,
    MeterRow,
    RegisterReadRow,
    SampleRow,
)

VersionSelector = Literal["latest", "original", "all"]


class Store(ClockQueries):
    """Repository over one database (SQLite or PostgreSQL/TimescaleDB)."""

    def __init__(self, engine: Engine) -> None:
        """Wrap ``engine``; the schema must already be migrated."""
        self.engine = engine
        self._channel_ids: dict[str, int] = {}

    # --- meters -----------------------------------------------------------------

    def add_meter(self, meter: Meter) -> Meter:
        """Store a new meter and return it with its id.

        Raises:
            StorageError: a meter with the same protocol, bus and address exists.
        """
        row = _row(meter, utcnow())
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

    def register_meters(self, meters: Sequence[Meter]) -> list[Meter]:
        """Store the meters not stored yet; return every one as stored (with its id).

        A meter is the same meter when protocol, bus and address match; a stored one
        keeps its id, settings and status (a retired meter stays retired).
        """
        now = utcnow()
        out: list[Meter] = []
        with translate_errors(self.engine), Session(self.engine) as session, session.begin():
            stored = {
                (r.protocol, r.bus, r.address): r for r in session.scalars(select(MeterRow))
            }  # fmt: skip
            for meter in meters:
                row = stored.get((str(meter.protocol), meter.bus, meter.address))
                if row is None:
                    row = _row(meter, now)
                    session.add(row)
                    session.flush()
                    stored[(row.protocol, row.bus, row.address)] = row
                out.append(_meter(row))
        return out

    def retire_meter(self, meter_id: int) -> Meter:
        """Mark a meter retired: no longer read; its data stays.

        Raises:
            StorageError: no meter with that id.
        """
        return self.set_meter_status(meter_id, MeterStatus.RETIRED)

    def set_meter_status(self, meter_id: int, status: MeterStatus) -> Meter:
        """Set a meter's status (``unavailable`` while it does not answer, ``active`` again).

        A retired meter stays retired: availability reports never bring it back.

        Raises:
            StorageError: no meter with that id.
        """
        with translate_errors(self.engine), Session(self.engine) as session, session.begin():
            row = session.get(MeterRow, meter_id)
            if row is None:
                raise StorageError(f"no meter with id {meter_id}")
            if row.status == MeterStatus.RETIRED and status is not MeterStatus.RETIRED:
                return _meter(row)
            row.status = str(status)
            row.updated_at = utcnow()
            return _meter(row)

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
        return ident

    # --- ingest -------------------------------------------------------------------

    def ingest_intervals(self, intervals: Sequence[Interval]) -> IngestResult:
        """Store intervals idempotently.

        Version 1 is the interval as collected; versions 2 and up (estimates,
        substitutes, operator edits) are stored beside it and supersede it in
        ``latest`` queries, while the original stays queryable.

        Raises:
            ReadingRejected: a value cannot be stored exactly, or a version 1
                interval carries edit provenance (``created_by``, ``comment``).
        """
        originals = [iv for iv in intervals if iv.version == 1]
        for iv in originals:
            if (
                iv.method is not None
                or iv.reason_codes
                or iv.comment is not None
                or (iv.created_by != SYSTEM_USER)
            ):
                raise ReadingRejected(
                    "version 1 is the interval as collected; an estimate or edit (method, "
                    "reason codes, comment, operator) must be version 2 or later"
                )
        versions = (
            [iv for iv in intervals if iv.version != 1] if len(originals) < len(intervals) else []
        )
        when, channel = time_encoder(self.engine), self._channel_lookup()
        result = ingest_rows(self.engine, INTERVALS, originals, self._original_converter())
        if versions:
            recorded = when(utcnow())
            result += ingest_rows(
                self.engine, INTERVAL_VERSIONS, versions,
                lambda iv: (
                    iv.meter_id, channel(iv.channel), when(iv.start),
                    int((iv.end - iv.start).total_seconds()),
                    None if iv.value is None else to_micro(iv.value), int(iv.quality),
                    int(iv.source), iv.version, iv.method, ",".join(iv.reason_codes) or None,
                    recorded, iv.created_by, iv.comment,
                ),
            )  # fmt: skip
        return result

    def _original_converter(self) -> Callable[[Interval], tuple[Any, ...]]:
        """Interval -> ``intervals`` row; the hot loop of bulk ingest, so kept flat.

        The exact-decimal check of ``to_micro`` is inlined for the common case;
        anything unusual goes through ``to_micro`` itself for its error message.
        """
        when = time_encoder(self.engine)
        aware_as_is = self.engine.dialect.name == "postgresql"
        ids = self._channel_ids
        lookup = self.channel_id
        scale, low, high = MICRO_SCALE, MIN_MICRO, MAX_MICRO

        def to_row(iv: Interval) -> tuple[Any, ...]:
            cid = ids.get(iv.channel)
            if cid is None:
                cid = lookup(iv.channel)
            start = iv.start
            value = iv.value
            if value is None:
                micro = None
            else:
                scaled = value * scale
                micro = int(scaled)
                if micro != scaled or not low <= micro <= high:
                    micro = to_micro(value)  # raises ReadingRejected, saying why
            return (
                iv.meter_id, cid, start if aware_as_is else when(start),
                int((iv.end - start).total_seconds()), micro, int(iv.quality), int(iv.source),
            )  # fmt: skip

        return to_row

    def _channel_lookup(self) -> Callable[[str], int]:
        ids = self._channel_ids

        def lookup(code: str) -> int:
            ident = ids.get(code)
            return ident if ident is not None else self.channel_id(code)

        return lookup

    def ingest_register_reads(self, reads: Sequence[RegisterRead]) -> IngestResult:
        """Store register reads idempotently."""
        when, channel = time_encoder(self.engine), self._channel_lookup()
        return ingest_rows(
            self.engine, REGISTER_READS, reads,
            lambda r: (
                r.meter_id, channel(r.channel), when(r.read_at), to_micro(r.value),
                when(r.collected_at), int(r.source),
                None if r.clock_offset_s is None else round(r.clock_offset_s * 1000),
            ),
        )  # fmt: skip

    def ingest_samples(self, samples: Sequence[Sample]) -> IngestResult:
        """Store instantaneous samples idempotently."""
        when, channel = time_encoder(self.engine), self._channel_lookup()
        return ingest_rows(
            self.engine, SAMPLES, samples,
            lambda s: (s.meter_id, channel(s.channel), when(s.at), to_micro(s.value)),
        )  # fmt: skip

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
        o, v = IntervalRow, IntervalVersionRow
        found = [
            self._interval(r, channel, version=1)
            for r in self._scalars(
                select(o)
                .where(o.meter_id == meter_id, o.channel_id == cid, o.ts >= start, o.ts < end)
                .order_by(o.ts)
            )
        ]
        if version == "original":
            return found
        found += [
            self._interval(r, channel, version=r.version)
            for r in self._scalars(
                select(v)
                .where(v.meter_id == meter_id, v.channel_id == cid, v.ts >= start, v.ts < end)
                .order_by(v.ts, v.version)
            )
        ]
        found.sort(key=lambda iv: (iv.start, iv.version))
        if version == "all":
            return found
        # Ordered by (start, version): the last one of each start wins.
        return list({iv.start: iv for iv in found}.values())

    def _scalars(self, query: Any) -> list[Any]:
        with translate_errors(self.engine), Session(self.engine) as session:
            return list(session.scalars(query))

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
        allowed = {INTERVALS.name, INTERVAL_VERSIONS.name, REGISTER_READS.name, SAMPLES.name,
                   "meters", "clock_checks"}  # fmt: skip
        if table not in allowed:
            raise StorageError(f"unknown table {table!r}")
        with translate_errors(self.engine), self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    # --- collection state -----------------------------------------------------------

    def last_register_reads(self, meter_id: int) -> dict[str, RegisterRead]:
        """The latest register read of each channel of a meter (where collection resumes)."""
        t = RegisterReadRow
        newest = (
            select(t.channel_id, func.max(t.read_at).label("at"))
            .where(t.meter_id == meter_id)
            .group_by(t.channel_id)
            .subquery()
        )
        query = (
            select(t, ChannelRow.code)
            .join(newest, (t.channel_id == newest.c.channel_id) & (t.read_at == newest.c.at))
            .join(ChannelRow, ChannelRow.id == t.channel_id)
            .where(t.meter_id == meter_id)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return {
                code: RegisterRead(
                    meter_id=r.meter_id, channel=code, read_at=r.read_at,
                    value=from_micro(r.value), collected_at=r.collected_at, source=Source(r.source),
                    clock_offset_s=None if r.clock_offset_ms is None else r.clock_offset_ms / 1000,
                )
                for r, code in session.execute(query)
            }  # fmt: skip

    def last_interval_ends(self, meter_id: int) -> dict[str, datetime]:
        """The end of the latest original (version 1) interval of each channel of a meter."""
        t = IntervalRow
        newest = (
            select(t.channel_id, func.max(t.ts).label("at"))
            .where(t.meter_id == meter_id)
            .group_by(t.channel_id)
            .subquery()
        )
        query = (
            select(ChannelRow.code, t.ts, t.duration_s)
            .join(newest, (t.channel_id == newest.c.channel_id) & (t.ts == newest.c.at))
            .join(ChannelRow, ChannelRow.id == t.channel_id)
            .where(t.meter_id == meter_id)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return {
                code: _aware(ts) + timedelta(seconds=duration)
                for code, ts, duration in session.execute(query)
            }

    def interval_counts(
        self, channel: str, start: datetime, end: datetime
    ) -> dict[int, tuple[int, int]]:
        """Per meter, original intervals of ``channel`` starting in ``[start, end)``.

        Returns:
            ``meter id -> (actual, missing)`` counts, for the daily success rate.
        """
        cid = self.channel_id(channel)
        t = IntervalRow
        actual = func.sum(case((t.quality == int(Quality.ACTUAL), 1), else_=0))
        missing = func.sum(case((t.quality == int(Quality.MISSING), 1), else_=0))
        query = (
            select(t.meter_id, actual, missing)
            .where(t.channel_id == cid, t.ts >= start, t.ts < end)
            .group_by(t.meter_id)
        )
        with translate_errors(self.engine), Session(self.engine) as session:
            return {m: (int(a or 0), int(x or 0)) for m, a, x in session.execute(query)}

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> list[int]:
        """Store anomalies and return their ids; a condition reported again extends its record.

        See :mod:`amigate.storage.anomaly_store` (replays are no-ops, a persisting
        condition keeps one record).
        """
        return add_anomalies(self.engine, anomalies)

    def _interval(self, r: Any, channel: str, *, version: int) -> Interval:
        codes = getattr(r, "reason_codes", None)
        return Interval(
            meter_id=r.meter_id, channel=channel, start=r.ts,
            end=r.ts + timedelta(seconds=r.duration_s),
            value=None if r.value is None else from_micro(r.value), quality=Quality(r.quality),
            method=getattr(r, "method", None),
            reason_codes=tuple(codes.split(",")) if codes else (),
            version=version, source=Source(r.source),
            created_by=getattr(r, "created_by", SYSTEM_USER), comment=getattr(r, "comment", None),
        )  # fmt: skip


def _row(meter: Meter, now: datetime) -> MeterRow:
    return MeterRow(
        address=meter.address, protocol=str(meter.protocol), model=meter.model, bus=meter.bus,
        service_point=meter.service_point, ct_ratio=meter.ct_ratio, pt_ratio=meter.pt_ratio,
        rated_voltage=meter.rated_voltage, rated_current=meter.rated_current,
        max_current=meter.max_current, timezone=meter.timezone,
        transformer_area=meter.transformer_area, role=str(meter.role),
        status=str(meter.status), created_at=now, updated_at=now,
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


def _aware(value: datetime) -> datetime:
    """Raw SQL columns come back naive on SQLite: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
