"""A bounded, durable local spool: the rows of each cycle until the database has them.

A bus worker appends every cycle's rows (register reads, intervals, samples,
anomalies: domain objects) to its spool, committed with fsync, before it counts
the cycle as done, then drains the spool oldest first into the database. When the
database is unavailable the rows stay, survive a crash or restart, and are drained
when it returns; the store's idempotent ingest makes a replay harmless.

The spool is a SQLite file (standard library, one per bus) bounded by
``max_rows``. When full, the oldest register reads and intervals of meters whose
memory allows backfill (a DL/T 645 load profile) are dropped first, then the
oldest other rows, each time with an ERROR naming the counts.

A drop leaves a hole with no rows at all. It is not recorded here: the bus worker
derives its intervals again from what the database holds once it is back
(``BusWorker.restore``), so the first stored read after the hole closes a gap
span from the last stored read before it, holding the register delta across the
hole exactly. Backfill finds that span like any other gap and replaces it with
the meter's load-profile records; a meter without memory keeps missing intervals
and the span. Nothing else is needed to survive a restart: the spool file and
the database hold everything the span is derived from. (Keeping the dropped
ranges as notes was the alternative; it would duplicate what the reads either
side of the hole already say, and need its own energy bookkeeping.)
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from amigate.domain import (
    Anomaly,
    AnomalyStatus,
    Interval,
    Quality,
    RegisterRead,
    Sample,
    Severity,
    Source,
)
from amigate.errors import AmigateError, StorageUnavailable

__all__ = ["Dropped", "Row", "RowSink", "Spool", "drain"]

_LOG = logging.getLogger(__name__)
Row = RegisterRead | Interval | Sample | Anomaly
#: Storage order of a drained batch: register reads first, so a restart resumes from them.
_KINDS: dict[str, type[Row]] = {
    "read": RegisterRead, "interval": Interval, "sample": Sample, "anomaly": Anomaly,
}  # fmt: skip
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}
_ENUMS: dict[str, type[enum.Enum]] = {
    "source": Source, "quality": Quality, "severity": Severity, "status": AnomalyStatus,
}  # fmt: skip
_SCHEMA = """CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, meter_id INTEGER,
    backfill INTEGER NOT NULL, body TEXT NOT NULL)"""


@dataclass(frozen=True)
class Dropped:
    """Rows dropped by one append because the spool was full."""

    backfillable: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        """All rows dropped."""
        return self.backfillable + self.other


class Spool:
    """An append-only, fsync'ed, bounded queue of rows in a SQLite file; thread-safe."""

    def __init__(self, path: Path | None, *, max_rows: int, name: str = "") -> None:
        """Open (or create) the spool at ``path``, keeping at most ``max_rows`` rows.

        ``path`` ``None`` keeps the spool in memory: bounded, but lost with the process.
        """
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_rows = path, max_rows
        self.name = name or (path.stem if path is not None else "memory")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            ":memory:" if path is None else path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.execute("PRAGMA cache_size=-256")  # KiB: a bus's spool is a short queue
        self._db.execute(_SCHEMA)
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self._count = int(self._db.execute("SELECT count(*) FROM rows").fetchone()[0])

    def __len__(self) -> int:
        """Rows in the spool."""
        return self._count

    def close(self) -> None:
        """Close the file (rows stay in it for the next run)."""
        with self._lock:
            self._db.close()

    def append(self, rows: Sequence[Row], *, backfillable: Collection[int] = ()) -> Dropped:
        """Add ``rows`` after the others, durably; drop the oldest rows if over the bound.

        Args:
            rows: the rows, in the order they were produced.
            backfillable: meters whose reads and intervals can be read again from the
                meter's memory: these are dropped first when the spool is full.
        """
        if not rows:
            return Dropped()
        values = []
        for row in rows:
            kind = _KIND_OF[type(row)]
            meter = row.meter_id
            again = kind in ("read", "interval") and meter is not None and meter in backfillable
            values.append((kind, meter, int(again), encode(row)))
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO rows (kind, meter_id, backfill, body) VALUES (?, ?, ?, ?)", values
            )
            self._count += len(values)
            over = self._count - self.max_rows
            dropped = Dropped(self._drop(over, "backfill = 1"), 0) if over > 0 else Dropped()
            if over > dropped.backfillable:
                dropped = Dropped(dropped.backfillable, self._drop(over - dropped.total, "1"))
        if dropped.total:
            _LOG.error(
                "spool %s is full (%d rows): dropped the oldest %d read(s) or interval(s) of "
                "meters with a load profile and %d other row(s). When the database is back, "
                "each hole becomes a gap span (the register delta across it) that backfill "
                "fills from the meter's load profile; meters without one keep missing "
                "intervals and the span; dropped samples and anomalies are lost",
                self.name, self.max_rows, dropped.backfillable, dropped.other,
            )  # fmt: skip
        return dropped

    def get_note(self, key: str) -> str | None:
        """A small value the bus keeps across restarts (e.g. its last time sync)."""
        with self._lock:
            found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else str(found[0])

    def set_note(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key``, durably."""
        with self._lock, self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def oldest(self, limit: int) -> list[tuple[int, Row]]:
        """The ``limit`` oldest rows with their sequence numbers (they stay in the spool)."""
        with self._lock:
            found = self._db.execute(
                "SELECT seq, kind, body FROM rows ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(seq, decode(kind, body)) for seq, kind, body in found]

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget rows (the database has them), durably."""
        keys = [(s,) for s in seqs]
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM rows WHERE seq = ?", keys)
            self._count -= self._db.total_changes - before

    def _drop(self, count: int, where: str) -> int:
        cursor = self._db.execute(
            f"DELETE FROM rows WHERE seq IN (SELECT seq FROM rows WHERE {where} "
            "ORDER BY seq LIMIT ?)",
            (count,),
        )
        self._count -= cursor.rowcount
        return cursor.rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class RowSink(Protocol):
    """Where drained rows go (a :class:`amigate.storage.Store`)."""

    def ingest_register_reads(self, reads: Sequence[RegisterRead]) -> object: ...
    def ingest_intervals(self, intervals: Sequence[Interval]) -> object: ...
    def ingest_samples(self, samples: Sequence[Sample]) -> object: ...
    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> object: ...


def drain(spool: Spool, sink: RowSink, *, batch: int = 10_000) -> int:
    """Store the spooled rows, oldest first, removing each group once it is stored.

    Rows the database refuses for good (not storable exactly, rejected) are logged
    as an ERROR and removed, so they cannot block the rows behind them.

    Returns:
        The rows stored.

    Raises:
        StorageUnavailable: the database is away; the rows not stored stay spooled.
    """
    stored = 0
    while found := spool.oldest(batch):
        for kind, cls in _KINDS.items():
            seqs = [seq for seq, row in found if isinstance(row, cls)]
            if not seqs:
                continue
            rows = [row for _, row in found if isinstance(row, cls)]
            try:
                _store(sink, rows)
                stored += len(rows)
            except StorageUnavailable:
                raise
            except AmigateError as exc:
                _LOG.error("spool %s: the database refused %d %s row(s), discarded: %s",
                           spool.name, len(rows), kind, exc)  # fmt: skip
            spool.remove(seqs)
    return stored


def _store(sink: RowSink, rows: list[Row]) -> None:
    first = rows[0]
    if isinstance(first, RegisterRead):
        sink.ingest_register_reads([r for r in rows if isinstance(r, RegisterRead)])
    elif isinstance(first, Interval):
        sink.ingest_intervals([r for r in rows if isinstance(r, Interval)])
    elif isinstance(first, Sample):
        sink.ingest_samples([r for r in rows if isinstance(r, Sample)])
    else:
        sink.add_anomalies([r for r in rows if isinstance(r, Anomaly)])


# --- encoding ---------------------------------------------------------------------------


def encode(row: Row) -> str:
    """A row as one line of JSON (exact decimals, aware times)."""
    return json.dumps({f.name: _plain(getattr(row, f.name)) for f in fields(row)},
                      separators=(",", ":"))  # fmt: skip


def decode(kind: str, body: str) -> Row:
    """The row :func:`encode` wrote."""
    data = {name: _typed(value) for name, value in json.loads(body).items()}
    for name, cls in _ENUMS.items():
        if name in data:
            data[name] = cls(data[name])
    if "reason_codes" in data:
        data["reason_codes"] = tuple(data["reason_codes"])
    return _KINDS[kind](**data)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {"$d"}:
            return Decimal(value["$d"])
        if value.keys() == {"$t"}:
            return datetime.fromisoformat(value["$t"])
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value
