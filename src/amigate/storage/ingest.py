"""Bulk, idempotent ingest of time series, with one fast path per backend.

Rows are immutable: a key (meter, channel, time[, version]) stored once keeps its
value. Ingesting a row again is a no-op (a replay); ingesting a *different* value
under a stored key is a conflict: it is not stored, it is counted and logged, and
the rest of the batch is stored (a correction is a new interval version).

Every transaction first probes a few of its keys (first, middle, last row):

* none stored (the usual case: new reads): the rows go straight into the table,
  by binary ``COPY`` inside a savepoint on PostgreSQL, by ``executemany`` of
  ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite. Should that meet stored keys
  after all (the COPY fails, or the insert skips rows), the transaction falls
  back to the staging path.
* some stored (a replay or an overlap): the rows go into a temporary table; one
  join counts those already stored and those stored with other values; unless
  every row is a replay, one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
  adds the rest.

Items are converted to rows on a helper thread one chunk ahead of the writer:
psycopg and sqlite3 release the GIL while the database works, so Python's
conversion of the next chunk overlaps with the database's work on this one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine

from amigate.domain import IngestResult
from amigate.errors import ReadingRejected
from amigate.storage.engine import translate_errors

log = logging.getLogger(__name__)

#: Rows per PostgreSQL transaction: large enough to amortise the per-batch
#: cost, small enough to keep a replay unit short (well under a second).
BATCH_ROWS = 25_000
#: Rows per SQLite transaction. SQLite writes every page a transaction touched
#: to the WAL at commit; rows arriving time-major touch one page per meter, so
#: larger transactions write far fewer pages per row.
SQLITE_BATCH_ROWS = 250_000
#: Rows converted (and, on SQLite, sorted by key) at a time; divides both batch sizes.
CHUNK_ROWS = 25_000
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
Chunks = Iterator[list[Row]]


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
        StorageUnavailable: the database went away; transactions already committed
            stay committed, the failed one is rolled back whole, so the caller can
            retry from it.
        StorageError: any other database failure.
        ReadingRejected: an item cannot be converted (nothing of its transaction is stored).
    """
    convert: ToRow = to_row if to_row is not None else tuple
    postgres = engine.dialect.name == "postgresql"
    per_transaction = BATCH_ROWS if postgres else SQLITE_BATCH_ROWS
    chunk_rows = min(CHUNK_ROWS, per_transaction)
    assert per_transaction % chunk_rows == 0, "chunks must not straddle transactions"
    write = _write_postgresql if postgres else _write_sqlite
    sort_key = None if postgres else itemgetter(*table.key_indexes)
    inserted = conflicts = 0
    with translate_errors(engine), _Prefetcher(items, convert, chunk_rows, sort_key) as chunks:
        for start in range(0, len(items), per_transaction):
            batch = items[start : start + per_transaction]
            n_chunks = -(-len(batch) // chunk_rows)
            probes = _probe_rows(batch, convert)
            added, refused = write(engine, table, probes, islice(chunks, n_chunks), len(batch))
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


class _Prefetcher:
    """Convert ``items`` in chunks on a helper thread, one chunk ahead of the consumer."""

    def __init__(
        self, items: Sequence[Any], convert: ToRow, size: int,
        sort_key: Callable[[Row], Any] | None,
    ) -> None:  # fmt: skip
        self._items, self._convert, self._size, self._sort_key = items, convert, size, sort_key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amigate-ingest")

    def _prepare(self, start: int) -> list[Row]:
        convert = self._convert
        rows = [convert(item) for item in self._items[start : start + self._size]]
        if self._sort_key is not None:
            rows.sort(key=self._sort_key)  # key order: each B-tree page is visited once
        return rows

    def _chunks(self) -> Chunks:
        starts = range(0, len(self._items), self._size)
        pending = self._pool.submit(self._prepare, 0) if starts else None
        for start in starts:
            assert pending is not None
            rows = pending.result()
            nxt = start + self._size
            pending = self._pool.submit(self._prepare, nxt) if nxt < len(self._items) else None
            yield rows

    def __enter__(self) -> Chunks:
        return self._chunks()

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


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


def _probe_rows(items: Sequence[Any], convert: ToRow) -> list[Row]:
    """A few rows of the batch (first, middle, last) to look up before choosing a path."""
    picks = sorted({0, len(items) // 2, len(items) - 1})[:_PROBES] if items else []
    return [convert(items[i]) for i in picks]


def _any_stored(execute: Callable[[str, list[Any]], Any], table: SeriesTable,
                probes: list[Row], placeholder: str) -> bool:  # fmt: skip
    where = " AND ".join(f"{k} = {placeholder}" for k in table.key)
    sql = f"SELECT 1 FROM {table.name} WHERE {where}"
    key_idx = table.key_indexes
    return any(execute(sql, [row[k] for k in key_idx]).fetchone() is not None for row in probes)


def _compare_sql(table: SeriesTable, stage: str, distinct: str) -> str:
    """Count the staged rows already stored, and those stored with other values."""
    join = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
    differs = " OR ".join(f"t.{c} {distinct} s.{c}" for c in table.value_columns) or "false"
    return (
        f"SELECT count(*), coalesce(sum(CASE WHEN {differs} THEN 1 ELSE 0 END), 0) "
        f"FROM {stage} s JOIN {table.name} t ON {join}"
    )


def _merge_sql(table: SeriesTable, stage: str) -> str:
    cols = ", ".join(table.columns)
    keys = ", ".join(table.key)
    return (
        f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} "
        f"WHERE true ON CONFLICT ({keys}) DO NOTHING"
    )


# --- SQLite -------------------------------------------------------------------


def _write_sqlite(
    engine: Engine, table: SeriesTable, probes: list[Row], chunks: Iterator[list[Row]], n: int
) -> tuple[int, int]:
    cols = ", ".join(table.columns)
    marks = ", ".join("?" * len(table.columns))
    stage = f"temp.stage_{table.name}"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if not _any_stored(cursor.execute, table, probes, "?"):
            insert = (
                f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(table.key)}) DO NOTHING"
            )
            inserted, kept = 0, []
            for rows in chunks:
                cursor.executemany(insert, rows)
                inserted += cursor.rowcount
                kept.extend(rows)
            conflicts = 0
            if inserted < n:  # some were stored after all: compare them
                _sqlite_stage(cursor, table, kept)
                conflicts = int(cursor.execute(_compare_sql(table, stage, "IS NOT")).fetchone()[1])
        else:
            _sqlite_stage(cursor, table, *chunks)
            present, conflicts = cursor.execute(_compare_sql(table, stage, "IS NOT")).fetchone()
            inserted = cursor.execute(_merge_sql(table, stage)).rowcount if present < n else 0
        raw.commit()
        return int(inserted), int(conflicts)
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()


def _sqlite_stage(cursor: Any, table: SeriesTable, *chunks: list[Row]) -> None:
    """Replace the temporary table's content with ``chunks``."""
    cols = ", ".join(table.columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS stage_{table.name} AS "
        f"SELECT {cols} FROM {table.name} WHERE 0"
    )
    cursor.execute(f"DELETE FROM temp.stage_{table.name}")
    marks = ", ".join("?" * len(table.columns))
    for rows in chunks:
        cursor.executemany(f"INSERT INTO temp.stage_{table.name} VALUES ({marks})", rows)


# --- PostgreSQL -----------------------------------------------------------------


def _write_postgresql(
    engine: Engine, table: SeriesTable, probes: list[Row], chunks: Iterator[list[Row]], n: int
) -> tuple[int, int]:
    rows = [row for chunk in chunks for row in chunk]
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        with conn.transaction():
            if not _any_stored(conn.execute, table, probes, "%s"):
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


def _copy(conn: Any, table: SeriesTable, target: str, rows: list[Row]) -> None:
    cols = ", ".join(table.columns)
    with conn.cursor().copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(table.pg_types)
        for row in rows:
            copy.write_row(row)


def _stage_and_merge(conn: Any, table: SeriesTable, rows: list[Row]) -> tuple[int, int]:
    stage = f"stage_{table.name}"
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
        f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy(conn, table, stage, rows)
    stored, conflicts = conn.execute(_compare_sql(table, stage, "IS DISTINCT FROM")).fetchone()
    if stored >= len(rows):  # a full replay: nothing to insert
        return 0, int(conflicts)
    return int(conn.execute(_merge_sql(table, stage)).rowcount), int(conflicts)


def utcnow() -> datetime:
    """The current time in UTC (the one clock read of the storage layer)."""
    return datetime.now(UTC)
