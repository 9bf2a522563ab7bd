"""SQLAlchemy models of the schema; the Alembic migrations in ``migrations/`` create it.

Time-series tables (register reads, intervals, samples, clock checks) are
TimescaleDB hypertables on PostgreSQL, partitioned by their time column, with
one unique key that makes ingest idempotent and no other index (see README,
"Storage"). On SQLite they are ``WITHOUT ROWID`` tables clustered on that key.
Values are integers of micro-units (``amigate.domain.VALUE_DECIMALS``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amigate.storage.types import ExactDecimal, UtcTimestamp

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The hypertables and their time column (the partitioning dimension).
HYPERTABLES: dict[str, str] = {
    "register_reads": "read_at",
    "intervals": "ts",
    "interval_versions": "ts",
    "samples": "at",
    "clock_checks": "checked_at",
}

_TS = {"sqlite_with_rowid": False}
#: The columns of ``ix_day_totals_meter_period`` (all of them: it is covering), in order.
_DAY_TOTALS_READ_ORDER = (
    "meter_id", "channel_id", "period", "day_start", "schedule", "energy", "intervals",
    "missing", "estimated", "estimated_energy", "covered_s", "overhang_s", "peak", "peak_at",
)  # fmt: skip
#: An integer array on PostgreSQL (JSON on SQLite, where nothing writes it).
_INTS = postgresql.ARRAY(Integer()).with_variant(JSON(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with a naming convention so constraint names are stable."""

    metadata = MetaData(naming_convention=NAMING)


class MeterRow(Base):
    """A meter at a service point on a bus."""

    __tablename__ = "meters"
    __table_args__ = (UniqueConstraint("protocol", "bus", "address", name="uq_meters_bus_address"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    address: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    bus: Mapped[str] = mapped_column(String(128))
    service_point: Mapped[str | None] = mapped_column(String(64))
    ct_ratio: Mapped[Decimal] = mapped_column(ExactDecimal())
    pt_ratio: Mapped[Decimal] = mapped_column(ExactDecimal())
    rated_voltage: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    rated_current: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    max_current: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    timezone: Mapped[str] = mapped_column(String(64))
    transformer_area: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    updated_at: Mapped[datetime] = mapped_column(UtcTimestamp())


class ChannelRow(Base):
    """A channel code (OBIS-style, e.g. ``1.8.0``) and its small integer id used in time series."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(
        SmallInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(32), unique=True)
    unit: Mapped[str | None] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(128))


class RegisterReadRow(Base):
    """A cumulative register value as the meter reported it."""

    __tablename__ = "register_reads"
    __table_args__ = _TS

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    read_at: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    collected_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    source: Mapped[int] = mapped_column(SmallInteger)
    clock_offset_ms: Mapped[int | None] = mapped_column(Integer)


class IntervalRow(Base):
    """The energy of ``[ts, ts + duration_s)`` on one channel as collected (version 1).

    The hot table: one narrow row per interval per channel, never updated; its
    width is what bulk ingest pays for, so it holds only what a read has.
    Estimates, substitutes and edits (with method, reason codes, who, when and
    why) are later versions in ``interval_versions``.
    """

    __tablename__ = "intervals"
    __table_args__ = _TS

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    duration_s: Mapped[int] = mapped_column(Integer)
    value: Mapped[int | None] = mapped_column(BigInteger)
    quality: Mapped[int] = mapped_column(SmallInteger)
    source: Mapped[int] = mapped_column(SmallInteger)


class IntervalVersionRow(Base):
    """A later version (2, 3, ...) of an interval: an estimate, substitute or operator edit."""

    __tablename__ = "interval_versions"
    __table_args__ = _TS

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    version: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    duration_s: Mapped[int] = mapped_column(Integer)
    value: Mapped[int | None] = mapped_column(BigInteger)
    quality: Mapped[int] = mapped_column(SmallInteger)
    source: Mapped[int] = mapped_column(SmallInteger)
    method: Mapped[int | None] = mapped_column(SmallInteger)
    reason_codes: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    created_by: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)


class SampleRow(Base):
    """An instantaneous value (per-phase U, I, P, Q, PF, frequency)."""

    __tablename__ = "samples"
    __table_args__ = _TS

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ClockCheckRow(Base):
    """The offset of a meter clock against the gateway clock at one check."""

    __tablename__ = "clock_checks"
    __table_args__ = _TS

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    offset_ms: Mapped[int] = mapped_column(Integer)
    corrected: Mapped[bool] = mapped_column(default=False)


class AnomalyRow(Base):
    """A typed event on a meter or a transformer area, with its lifecycle."""

    __tablename__ = "anomalies"
    __table_args__ = (
        Index("ix_anomalies_meter_kind_status", "meter_id", "kind", "status"),
        Index("ix_anomalies_area_start", "transformer_area", "start_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    meter_id: Mapped[int | None] = mapped_column(Integer)
    transformer_area: Mapped[str | None] = mapped_column(String(64))
    start_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    end_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    updated_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    comment: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(64))
    occurrences: Mapped[int] = mapped_column(Integer, server_default="1")
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())


class MeterProfileRow(Base):
    """What validation rules need to know about a meter beyond the ``meters`` row."""

    __tablename__ = "meter_profiles"

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    phases: Mapped[int | None] = mapped_column(SmallInteger)
    contract_kw: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    has_generation: Mapped[bool] = mapped_column(default=False)
    register_capacity: Mapped[Decimal | None] = mapped_column(ExactDecimal())
    updated_at: Mapped[datetime] = mapped_column(UtcTimestamp())


class VeeRunRow(Base):
    """One validation run: what it covered, the parameters it used, what it found."""

    __tablename__ = "vee_runs"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    started_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    finished_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    since: Mapped[datetime] = mapped_column(UtcTimestamp())
    until: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    meters: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    intervals: Mapped[int] = mapped_column(BigInteger)
    anomalies: Mapped[int] = mapped_column(Integer)
    versions: Mapped[int] = mapped_column(Integer)


class DayTotalRow(Base):
    """What the version-1 intervals of one meter, channel, local day and time-of-use period add
    up to: a cache that lets billing read 30 rows instead of 2,880 for a meter-month.

    Built for closed days whose intervals have no later versions, for one schedule
    (``schedule``: a digest of the time-of-use day ranges, the UTC offset and the
    interval length). Any write to the series within the day deletes its rows (the
    change-feed hooks, see migration 0004), so a row present is always current.
    ``overhang_s`` is the part of the day's intervals lasting past its end (spans),
    which a billing period ending at that midnight does not cover. The builder finds
    what a day still lacks through the ``day_start`` index.

    Determinants read the rows through ``ix_day_totals_meter_period``, which holds every
    column in (meter, channel, period, day) order: SQLite then adds up each meter's
    periods as it reads them instead of sorting the rows first (a 1,000-meter month,
    120k rows: 80 ms instead of 310).
    """

    __tablename__ = "day_totals"
    __table_args__ = (
        Index("ix_day_totals_day_start", "day_start"),
        Index("ix_day_totals_meter_period", *_DAY_TOTALS_READ_ORDER),
        _TS,
    )

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    day_start: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    period: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    schedule: Mapped[str] = mapped_column(String(16))
    energy: Mapped[int] = mapped_column(BigInteger)
    intervals: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer)
    estimated: Mapped[int] = mapped_column(Integer)
    estimated_energy: Mapped[int] = mapped_column(BigInteger)
    covered_s: Mapped[int] = mapped_column(BigInteger)
    overhang_s: Mapped[int] = mapped_column(BigInteger)
    peak: Mapped[int | None] = mapped_column(BigInteger)
    peak_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())


class DaySeriesRow(Base):
    """The version-1 intervals of one meter, channel and closed local day, as the text columns
    an interval series is written from: a meter-month series reads 30 rows instead of
    2,880 (``amigate.storage.day_series``).

    A cache like ``day_totals``: built only for days whose intervals have no later
    versions, and deleted by any write into its day (migration 0007), so a row present
    is always current. A day read every interval (one length, quality and source, one
    start every ``step_s`` from ``first_s``) keeps no starts and one ``packed`` code;
    any other day keeps ``step_s`` 0 and every start and code.
    """

    __tablename__ = "day_series"
    __table_args__ = (Index("ix_day_series_day_start", "day_start"), _TS)

    meter_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    day_start: Mapped[datetime] = mapped_column(UtcTimestamp(), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    first_s: Mapped[int] = mapped_column(BigInteger)  # epoch seconds of the first start
    step_s: Mapped[int] = mapped_column(Integer)
    starts: Mapped[str | None] = mapped_column(Text)  # epoch seconds, comma-separated
    packed: Mapped[str] = mapped_column(Text)  # duration, quality and source (plain_series)
    vals: Mapped[str] = mapped_column(Text)  # micro-units, "n" when missing


class IngestBatchRow(Base):
    """A fingerprint of a batch stored whole, so that the same batch sent again is a cheap no-op.

    Gateways that forward through an outbox re-send a batch whose acknowledgement
    was lost; recognising it by its fingerprint costs one lookup instead of one
    index probe per row.
    """

    __tablename__ = "ingest_batches"

    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())


class ApiKeyRow(Base):
    """An API key: only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())


class ChangeRow(Base):
    """One entry of the change feed: new intervals or versions of a series, or an anomaly change.

    Written by database triggers (see migration 0003), never by the application.
    ``txid`` orders the feed: on PostgreSQL the writing transaction's id, on SQLite
    the generation in which a feed reader sealed the entry (NULL until then; while
    open, an entry absorbs further rows of its series). Ids 0 mean "none".
    """

    __tablename__ = "changes"
    __table_args__ = (
        Index("ix_changes_txid_id", "txid", "id"),
        Index("uq_changes_open", "kind", "meter_id", "channel_id", "anomaly_id", unique=True,
              sqlite_where=text("txid IS NULL"), postgresql_where=text("txid IS NULL")),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    txid: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    meter_id: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[int] = mapped_column(Integer)
    anomaly_id: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    last_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(UtcTimestamp())


class ChangeLogRow(Base):
    """What one statement stored on PostgreSQL on one channel, for the change feed.

    ``meters`` and ``counts``: the meters written and their rows; ``first_at`` and
    ``last_at``: the statement's first and last start. An anomaly created or moved
    logs its meter, range, id and status. Written by triggers (migration 0005); a
    feed reader moves committed rows into open ``changes`` entries. Unused on
    SQLite, whose ingest writes open entries itself.
    """

    __tablename__ = "change_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[int] = mapped_column(Integer)
    meters: Mapped[list[int]] = mapped_column(_INTS)
    counts: Mapped[list[int]] = mapped_column(_INTS)
    first_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    last_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    anomaly_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str | None] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(UtcTimestamp())
