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
    The same shape: a batch whose probed keys are not stored goes in with one
    ``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING``; otherwise (or when
    that insert skipped rows) it is staged in an in-memory temporary table and
    compared with one join before the remaining rows are inserted.

Items are converted to rows lazily, while they are written, so on PostgreSQL the
Python conversion overlaps with the server's work on the rows already sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine

from amigate.domain import IngestResult
from amigate.errors import ReadingRejected, StorageError
from amigate.storage.engine import translate_errors

log = logging.getLogger(__name__)

#: Rows per PostgreSQL transaction: large enough to amortise the per-batch
#: cost, small enough to keep a replay unit short (well under a second).
BATCH_ROWS = 20_000
#: Rows per SQLite transaction. SQLite writes every page a transaction touched
#: to the WAL at commit; rows arriving time-major touch one page per meter, so
#: larger transactions write far fewer pages per row.
SQLITE_BATCH_ROWS = 250_000
_SQLITE_CHUNK = 25_000
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
    columns=("meter_id", "channel_id", "ts", "duration_s", "value", "quality", "source"),
    key=("meter_id", "channel_id", "ts"),
    pg_types=("int4", "int2", "timestamptz", "int4", "int8", "int2", "int2"),
    time_columns=(2,),
)

INTERVAL_VERSIONS = SeriesTable(
    name="interval_versions",
    columns=(
        *INTERVALS.columns, "version", "method", "reason_codes", "recorded_at", "created_by",
        "comment",
    ),
    key=("meter_id", "channel_id", "ts", "version"),
    pg_types=(*INTERVALS.pg_types, "int2", "int2", "varchar", "timestamptz", "varchar", "text"),
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
ToRow = Callable[[Any], Row]


def ingest_rows(
    engine: Engine, table: SeriesTable, items: Sequence[Any], to_row: ToRow | None = None
) -> IngestResult:
    """Store ``items`` idempotently, converting each with ``to_row``.

    Args:
        engine: the database.
        table: which series table.
        items: the items; any number, written in transactions of ``BATCH_ROWS``
            (``SQLITE_BATCH_ROWS`` on SQLite).
        to_row: turns an item into a tuple in ``table.columns`` order, with
            timestamps already in the backend's form (see ``time_encoder``);
            None when the items are such tuples already.

    Returns:
        How many rows were offered, inserted, and refused as conflicts.

    Raises:
        StorageUnavailable: the database went away; batches already committed stay
            committed, the failed batch is rolled back whole, so the caller can retry it.
        StorageError: any other database failure.
    """
    convert: ToRow = to_row if to_row is not None else _identity
    write: Callable[[Engine, SeriesTable, Sequence[Any], ToRow], tuple[int, int]]
    if engine.dialect.name == "postgresql":
        write, size = _write_postgresql, BATCH_ROWS
    else:
        write, size = _write_sqlite, SQLITE_BATCH_ROWS
    inserted = conflicts = 0
    with translate_errors(engine):
        for start in range(0, len(items), size):
            added, refused = write(engine, table, items[start : start + size], convert)
            inserted += added
            conflicts += refused
    if conflicts:
        log.warning(
            "%s: %d row(s) not stored: a different value is already stored under the same key "
            "(stored rows are never overwritten; send a new version instead)",
            table.name,
            conflicts,
        )
    return IngestResult(offered=len(items), inserted=inserted, conflicts=conflicts)


def _identity(row: Any) -> Row:
    return tuple(row)


def time_encoder(engine: Engine) -> Callable[[datetime], Any]:
    """The function that turns an aware datetime into what ``to_row`` must put in a row.

    PostgreSQL takes datetimes as they are; SQLite stores epoch seconds (a
    batch shares few distinct times, so they are memoised).
    """
    if engine.dialect.name == "postgresql":
        return _same
    epochs: dict[datetime, int] = {}

    def epoch(moment: datetime) -> int:
        value = epochs.get(moment)
        if value is None:
            if moment.utcoffset() is None:
                raise ReadingRejected(f"timestamp {moment.isoformat()} has no timezone")
            value = epochs[moment] = int(moment.timestamp())
        return value

    return epoch


def _same(moment: datetime) -> datetime:
    return moment


def _probe_sql(table: SeriesTable, placeholder: str) -> str:
    where = " AND ".join(f"{k} = {placeholder}" for k in table.key)
    return f"SELECT 1 FROM {table.name} WHERE {where}"


def _probe_rows(items: Sequence[Any], convert: ToRow) -> list[Row]:
    """A few rows of the batch (first, middle, last) to look up before choosing a path."""
    picks = sorted({0, len(items) // 2, len(items) - 1})[:_PROBES] if items else []
    return [convert(items[i]) for i in picks]


def _conflict_count_sql(table: SeriesTable, stage: str, distinct: str) -> str:
    join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
    differs = " OR ".join(f"t.{c} {distinct} s.{c}" for c in table.value_columns) or "false"
    return (
        f"SELECT count(*), coalesce(sum(CASE WHEN {differs} THEN 1 ELSE 0 END), 0) "
        f"FROM {stage} s JOIN {table.name} t ON {join}"
    )


# --- SQLite -------------------------------------------------------------------


def _write_sqlite(
    engine: Engine, table: SeriesTable, items: Sequence[Any], convert: ToRow
) -> tuple[int, int]:
    cols = ", ".join(table.columns)
    marks = ", ".join("?" * len(table.columns))
    keys = ", ".join(table.key)
    stage = f"stage_{table.name}"
    probe = _probe_sql(table, "?")
    key_idx = table.key_indexes
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        stored = any(
            cursor.execute(probe, [row[k] for k in key_idx]).fetchone() is not None
            for row in _probe_rows(items, convert)
        )
        if not stored:
            insert = (
                f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({keys}) DO NOTHING"
            )
            rows = _pipelined_executemany(cursor, insert, items, convert, key_idx)
            inserted = rows.inserted
            conflicts = 0
            if inserted < len(items):  # some were stored after all: compare them
                conflicts = _sqlite_stage(cursor, table, rows.kept)[1]
        else:
            _sqlite_clear_stage(cursor, table)
            staged = f"INSERT INTO temp.{stage} VALUES ({marks})"
            _pipelined_executemany(cursor, staged, items, convert, key_idx)
            present, conflicts = _sqlite_compare(cursor, table)
            inserted = 0
            if present < len(items):
                cursor.execute(
                    f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM temp.{stage} "
                    f"WHERE true ON CONFLICT ({keys}) DO NOTHING"
                )
                inserted = cursor.rowcount
        raw.commit()
        return inserted, conflicts
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


@dataclass
class _Written:
    inserted: int
    kept: list[Row]


def _pipelined_executemany(
    cursor: Any, sql: str, items: Sequence[Any], convert: ToRow, key_idx: tuple[int, ...]
) -> _Written:
    """Run ``sql`` over the converted items, converting the next chunk while SQLite writes.

    sqlite3 releases the GIL while SQLite works, so converting chunk n+1 on a
    helper thread overlaps with inserting chunk n. Each chunk is sorted by key so
    the B-tree pages are visited in order.
    """
    by_key = itemgetter(*key_idx)

    def prepare(chunk: Sequence[Any]) -> list[Row]:
        rows = [convert(item) for item in chunk]
        rows.sort(key=by_key)
        return rows

    chunks = [items[i : i + _SQLITE_CHUNK] for i in range(0, len(items), _SQLITE_CHUNK)]
    kept: list[Row] = []
    inserted = 0
    if not chunks:
        return _Written(0, kept)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="amigate-ingest") as pool:
        pending = pool.submit(prepare, chunks[0])
        for n in range(len(chunks)):
            rows = pending.result()
            if n + 1 < len(chunks):
                pending = pool.submit(prepare, chunks[n + 1])
            cursor.executemany(sql, rows)
            inserted += cursor.rowcount
            kept.extend(rows)
    return _Written(inserted, kept)


def _sqlite_clear_stage(cursor: Any, table: SeriesTable) -> None:
    stage = f"stage_{table.name}"
    cols = ", ".join(table.columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {cols} FROM {table.name} WHERE 0"
    )
    cursor.execute(f"DELETE FROM temp.{stage}")


def _sqlite_compare(cursor: Any, table: SeriesTable) -> tuple[int, int]:
    """Count the staged rows that are stored, and those stored with other values."""
    sql = _conflict_count_sql(table, f"temp.stage_{table.name}", "IS NOT")
    present, conflicts = cursor.execute(sql).fetchone()
    return int(present), int(conflicts)


def _sqlite_stage(cursor: Any, table: SeriesTable, rows: list[Row]) -> tuple[int, int]:
    """Copy ``rows`` into the temporary table and compare them with the stored ones."""
    _sqlite_clear_stage(cursor, table)
    marks = ", ".join("?" * len(table.columns))
    cursor.executemany(f"INSERT INTO temp.stage_{table.name} VALUES ({marks})", rows)
    return _sqlite_compare(cursor, table)


# --- PostgreSQL -----------------------------------------------------------------


def _write_postgresql(
    engine: Engine, table: SeriesTable, items: Sequence[Any], convert: ToRow
) -> tuple[int, int]:
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        probe = _probe_sql(table, "%s")
        key_idx = table.key_indexes
        with conn.transaction():
            stored = any(
                conn.execute(probe, [row[k] for k in key_idx]).fetchone() is not None
                for row in _probe_rows(items, convert)
            )
            rows: list[Row] = []
            if not stored:
                try:
                    with conn.transaction():  # a savepoint: a conflicting COPY rolls back alone
                        _copy(conn, table, table.name, _converting(items, convert, rows))
                    return len(rows), 0
                except _unique_violation():
                    log.debug("%s: batch overlaps stored rows, using the staging path", table.name)
            rows.extend(convert(item) for item in items[len(rows) :])
            return _stage_and_merge(conn, table, rows)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _converting(items: Sequence[Any], convert: ToRow, keep: list[Row]) -> Iterator[Row]:
    """Convert items one by one, keeping each row (for the staging path if COPY fails)."""
    append = keep.append
    for item in items:
        row = convert(item)
        append(row)
        yield row


def _unique_violation() -> type[Exception]:
    import psycopg.errors

    return psycopg.errors.UniqueViolation


def _copy(conn: Any, table: SeriesTable, target: str, rows: Iterable[Row]) -> None:
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
    stored, conflicts = conn.execute(
        _conflict_count_sql(table, stage, "IS DISTINCT FROM")
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
    "INTERVAL_VERSIONS",
    "REGISTER_READS",
    "SAMPLES",
    "SeriesTable",
    "StorageError",
    "ingest_rows",
]
