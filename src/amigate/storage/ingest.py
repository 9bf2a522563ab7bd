"""Bulk, idempotent ingest of time series, with one fast path per backend.

Rows are immutable: a key (meter, channel, time[, version]) stored once keeps its
value. Ingesting a row again is a no-op (a replay); ingesting a *different* value
under a stored key is a conflict: it is not stored, it is counted and logged, and
the rest of the batch is stored (a correction is a new interval version).

PostgreSQL / TimescaleDB
    A batch whose keys are not stored yet (the usual case: new reads) is written
    with one binary ``COPY`` straight into the hypertable, inside a savepoint. If
    that COPY hits a stored key, or a probe of a few keys finds the batch already
    stored, the batch goes through the staging path instead: binary COPY into a
    temporary table, one join that counts what is already there (and what
    conflicts), and, unless everything is a replay, one
    ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.

SQLite
    ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction;
    when some rows were not inserted, their stored values are compared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from amigate.domain import IngestResult
from amigate.errors import StorageError
from amigate.storage.engine import translate_errors

log = logging.getLogger(__name__)

#: Rows per transaction: large enough to amortise the per-batch cost, small
#: enough to keep a replay unit short (about one second of data).
BATCH_ROWS = 20_000
_PROBES = 3


@dataclass(frozen=True)
class SeriesTable:
    """How one time-series table is written.

    Attributes:
        name: the table.
        columns: all columns, in the order rows are given.
        key: the unique key columns (a prefix of ``columns`` is not required).
        pg_types: PostgreSQL type names of ``columns`` for binary COPY.
        time_columns: indexes of the timestamp columns in a row.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    pg_types: tuple[str, ...]
    time_columns: tuple[int, ...]

    @property
    def key_indexes(self) -> tuple[int, ...]:
        """Positions of the key columns in a row."""
        return tuple(self.columns.index(c) for c in self.key)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The non-key columns compared to tell a replay from a conflict."""
        ignored = {"recorded_at", "collected_at"}
        return tuple(c for c in self.columns if c not in self.key and c not in ignored)


INTERVALS = SeriesTable(
    name="intervals",
    columns=(
        "meter_id", "channel_id", "ts", "version", "duration_s", "value", "quality",
        "method", "reason_codes", "source", "recorded_at", "created_by", "comment",
    ),
    key=("meter_id", "channel_id", "ts", "version"),
    pg_types=(
        "int4", "int2", "timestamptz", "int2", "int4", "int8", "int2",
        "int2", "varchar", "int2", "timestamptz", "varchar", "text",
    ),
    time_columns=(2, 10),
)  # fmt: skip

REGISTER_READS = SeriesTable(
    name="register_reads",
    columns=(
        "meter_id", "channel_id", "read_at", "value", "collected_at", "source", "clock_offset_ms",
    ),
    key=("meter_id", "channel_id", "read_at"),
    pg_types=("int4", "int2", "timestamptz", "int8", "timestamptz", "int2", "int4"),
    time_columns=(2, 4),
)  # fmt: skip

SAMPLES = SeriesTable(
    name="samples",
    columns=("meter_id", "channel_id", "at", "value"),
    key=("meter_id", "channel_id", "at"),
    pg_types=("int4", "int2", "timestamptz", "int8"),
    time_columns=(2,),
)

CLOCK_CHECKS = SeriesTable(
    name="clock_checks",
    columns=("meter_id", "checked_at", "offset_ms", "corrected"),
    key=("meter_id", "checked_at"),
    pg_types=("int4", "timestamptz", "int4", "bool"),
    time_columns=(1,),
)

Row = tuple[Any, ...]


def ingest_rows(engine: Engine, table: SeriesTable, rows: Sequence[Row]) -> IngestResult:
    """Store ``rows`` (tuples in ``table.columns`` order, aware datetimes) idempotently.

    Args:
        engine: the database.
        table: which series table.
        rows: the rows; any number, written in transactions of ``BATCH_ROWS``.

    Returns:
        How many rows were offered, inserted, and refused as conflicts.

    Raises:
        StorageUnavailable: the database went away; batches already committed stay
            committed, the failed batch is rolled back whole, so the caller can retry it.
        StorageError: any other database failure.
    """
    write: Callable[[Engine, SeriesTable, Sequence[Row]], tuple[int, int]]
    write = _write_postgresql if engine.dialect.name == "postgresql" else _write_sqlite
    inserted = conflicts = 0
    with translate_errors(engine):
        for start in range(0, len(rows), BATCH_ROWS):
            batch = rows[start : start + BATCH_ROWS]
            added, refused = write(engine, table, batch)
            inserted += added
            conflicts += refused
    if conflicts:
        log.warning(
            "%s: %d row(s) not stored: a different value is already stored under the same key "
            "(stored rows are never overwritten; send a new version instead)",
            table.name,
            conflicts,
        )
    return IngestResult(offered=len(rows), inserted=inserted, conflicts=conflicts)


# --- SQLite -------------------------------------------------------------------


def _epoch_rows(table: SeriesTable, rows: Sequence[Row]) -> list[Row]:
    times = table.time_columns
    out = []
    for row in rows:
        as_list = list(row)
        for i in times:
            as_list[i] = int(as_list[i].timestamp())
        out.append(tuple(as_list))
    return out


def _write_sqlite(engine: Engine, table: SeriesTable, rows: Sequence[Row]) -> tuple[int, int]:
    cols = ", ".join(table.columns)
    marks = ", ".join("?" * len(table.columns))
    keys = ", ".join(table.key)
    sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) ON CONFLICT ({keys}) DO NOTHING"
    prepared = _epoch_rows(table, rows)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.executemany(sql, prepared)
        inserted = cursor.rowcount
        conflicts = 0
        if inserted < len(prepared):
            conflicts = _sqlite_conflicts(cursor, table, prepared)
        raw.commit()
        return inserted, conflicts
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _sqlite_conflicts(cursor: Any, table: SeriesTable, rows: list[Row]) -> int:
    """Count rows whose key is stored with other values (only run when some were not inserted)."""
    cols = ", ".join(table.columns)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{table.name} AS "
                   f"SELECT {cols} FROM {table.name} WHERE 0")  # fmt: skip
    cursor.execute(f"DELETE FROM stage_{table.name}")
    marks = ", ".join("?" * len(table.columns))
    cursor.executemany(f"INSERT INTO stage_{table.name} VALUES ({marks})", rows)
    return int(cursor.execute(_conflict_count_sql(table, f"stage_{table.name}", "IS NOT")).fetchone()[0])


def _conflict_count_sql(table: SeriesTable, stage: str, distinct: str) -> str:
    join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
    differs = " OR ".join(f"t.{c} {distinct} s.{c}" for c in table.value_columns) or "false"
    return f"SELECT count(*) FILTER (WHERE {differs}) FROM {stage} s JOIN {table.name} t ON {join}"


# --- PostgreSQL -----------------------------------------------------------------


def _write_postgresql(engine: Engine, table: SeriesTable, rows: Sequence[Row]) -> tuple[int, int]:
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        with conn.transaction():
            if not _any_stored(conn, table, rows):
                try:
                    with conn.transaction():  # a savepoint: a conflicting COPY rolls back alone
                        _copy(conn, table, table.name, rows)
                    return len(rows), 0
                except _unique_violation():
                    log.debug("%s: batch overlaps stored rows, using the staging path", table.name)
            return _stage_and_merge(conn, table, rows)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _unique_violation() -> type[Exception]:
    import psycopg.errors

    return psycopg.errors.UniqueViolation


def _any_stored(conn: Any, table: SeriesTable, rows: Sequence[Row]) -> bool:
    """Probe a few keys of the batch: a replayed batch is caught before a doomed COPY."""
    if not rows:
        return False
    picks = {0, len(rows) // 2, len(rows) - 1}
    key_idx = table.key_indexes
    where = " AND ".join(f"{k} = %s" for k in table.key)
    sql = f"SELECT 1 FROM {table.name} WHERE {where}"
    for i in sorted(picks)[:_PROBES]:
        if conn.execute(sql, [rows[i][j] for j in key_idx]).fetchone() is not None:
            return True
    return False


def _copy(conn: Any, table: SeriesTable, target: str, rows: Sequence[Row]) -> None:
    cols = ", ".join(table.columns)
    with conn.cursor().copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(table.pg_types)
        for row in rows:
            copy.write_row(row)


def _stage_and_merge(conn: Any, table: SeriesTable, rows: Sequence[Row]) -> tuple[int, int]:
    stage = f"stage_{table.name}"
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
        f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy(conn, table, stage, rows)
    join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
    differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in table.value_columns) or "false"
    stored, conflicts = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {differs}) "
        f"FROM {stage} s JOIN {table.name} t ON {join}"
    ).fetchone()
    if stored >= len(rows):  # a full replay: nothing to insert
        return 0, int(conflicts)
    cols = ", ".join(table.columns)
    keys = ", ".join(table.key)
    cursor = conn.execute(
        f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} "
        f"ON CONFLICT ({keys}) DO NOTHING"
    )
    return int(cursor.rowcount), int(conflicts)


def utcnow() -> datetime:
    """The current time in UTC (the one clock read of this module, for recorded_at)."""
    return datetime.now(UTC)


__all__ = [
    "CLOCK_CHECKS",
    "INTERVALS",
    "REGISTER_READS",
    "SAMPLES",
    "SeriesTable",
    "StorageError",
    "ingest_rows",
]
