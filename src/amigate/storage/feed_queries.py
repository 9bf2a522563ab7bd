"""The change feed: entries written with the data (migrations 0003, 0005), read in order.

On SQLite, writers add to *open* entries (``txid`` NULL), one per series or
anomaly, in the ingest transaction. On PostgreSQL, triggers append one
``change_log`` row per statement and channel (cheaper than one upsert per series),
and a reader first moves the committed log rows into open entries. A reader then
seals every open entry it can see with the next generation number, inside its own
transaction (serialized by an advisory lock on PostgreSQL, by the write lock on
SQLite), and returns sealed entries by (generation, id). What a transaction still
running wrote is invisible, stays behind and gets a later generation: nothing can
appear behind a cursor already handed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, text

from amigate.errors import FeedCursorExpired
from amigate.storage.engine import translate_errors
from amigate.storage.types import from_stored


@dataclass(frozen=True)
class Change:
    """One feed entry."""

    txid: int
    id: int
    kind: str
    meter_id: int | None
    channel: str | None
    anomaly_id: int | None
    first_at: datetime | None
    last_at: datetime | None
    rows: int
    status: str | None
    recorded_at: datetime


_COLUMNS = (
    "c.txid, c.id, c.kind, c.meter_id, ch.code, c.anomaly_id, c.first_at, c.last_at, c.rows, "
    "c.status, c.recorded_at FROM changes c LEFT JOIN channels ch ON ch.id = c.channel_id"
)
#: The advisory lock that serializes feed readers on PostgreSQL ("amigate feed").
_FEED_LOCK = 0x616D_6967_6665_6564
_PRUNED = "pruned"
_PRUNED_MARK = f"SELECT txid, id FROM changes WHERE kind = '{_PRUNED}'"
#: PostgreSQL: move the committed log rows (migration 0005) into open entries, one per
#: series or anomaly, created in the order they were first logged. An anomaly keeps its
#: latest status and range.
_FROM_LOG = (
    "WITH moved AS (DELETE FROM change_log RETURNING id, kind, channel_id, meters, counts, "
    "first_at, last_at, anomaly_id, status, recorded_at), "
    "s AS (SELECT m.id AS log_id, kind, channel_id, u.meter_id, u.n, first_at AS lo, "
    "last_at AS hi, coalesce(anomaly_id, 0) AS anomaly_id, status, recorded_at "
    "FROM moved m, unnest(m.meters, m.counts) AS u(meter_id, n)) "
    "INSERT INTO changes AS c (txid, kind, meter_id, channel_id, anomaly_id, first_at, last_at, "
    "rows, status, recorded_at) SELECT NULL, kind, meter_id, channel_id, anomaly_id, "
    "CASE WHEN kind = 'anomaly' THEN (array_agg(lo ORDER BY log_id DESC))[1] ELSE min(lo) END, "
    "CASE WHEN kind = 'anomaly' THEN (array_agg(hi ORDER BY log_id DESC))[1] ELSE max(hi) END, "
    "sum(n), (array_agg(status ORDER BY log_id DESC))[1], min(recorded_at) FROM s "
    "GROUP BY kind, meter_id, channel_id, anomaly_id ORDER BY min(log_id) "
    "ON CONFLICT (kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL DO UPDATE SET "
    "first_at = CASE WHEN c.kind = 'anomaly' THEN excluded.first_at "
    "ELSE least(c.first_at, excluded.first_at) END, "
    "last_at = CASE WHEN c.kind = 'anomaly' THEN excluded.last_at "
    "ELSE greatest(c.last_at, excluded.last_at) END, "
    "rows = c.rows + excluded.rows, status = excluded.status"
)
_SEAL = (
    "UPDATE changes SET txid = (SELECT coalesce(max(txid), 0) + 1 FROM changes) WHERE txid IS NULL"
)


#: Series tables whose new rows the feed reports, and the kind of their entries.
SERIES_KINDS = {"intervals": "intervals", "interval_versions": "versions"}
_RECORD = (
    "INSERT INTO changes (txid, kind, meter_id, channel_id, anomaly_id, first_at, last_at, rows, "
    "recorded_at) VALUES (NULL, ?, ?, ?, 0, ?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER)) "
    "ON CONFLICT (kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL DO UPDATE SET "
    "first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at), "
    "rows = rows + excluded.rows"
)
#: The caches of a series' days (migrations 0004 and 0007), dropped by a write into the day.
_STALE = tuple(
    f"DELETE FROM {cache} WHERE meter_id = ? AND channel_id = ? AND day_start > ? "
    "AND day_start <= ?"
    for cache in ("day_totals", "day_series")
)


def record_sqlite(cursor: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add the feed entries of rows just stored in a series table (SQLite, same transaction),
    and drop the day totals and day series of the days they fall in.

    ``rows`` start with ``(meter_id, channel_id, ts)``. One open entry per series
    absorbs them (range of starts, count). When some of them were stored before
    (an overlapping batch), the entry covers them too: a consumer re-reads them.
    """
    kind = SERIES_KINDS.get(table)
    if kind is None or not rows:
        return
    spans: dict[tuple[int, int], list[int]] = {}
    ts_of = itemgetter(2)
    for key, group in groupby(rows, itemgetter(0, 1)):  # rows come grouped by series
        stamps = list(map(ts_of, group))
        lo, hi = min(stamps), max(stamps)
        span = spans.get(key)
        if span is None:
            spans[key] = [lo, hi, len(stamps)]
        else:
            span[0], span[1], span[2] = min(span[0], lo), max(span[1], hi), span[2] + len(stamps)
    cursor.executemany(_RECORD, [(kind, m, c, lo, hi, n) for (m, c), (lo, hi, n) in spans.items()])
    # Day totals and series of the days written into are no longer current.
    days = [(m, c, lo - 86_400, hi) for (m, c), (lo, hi, _n) in spans.items()]
    for stale in _STALE:
        cursor.executemany(stale, days)


def read_changes(
    engine: Engine, after: tuple[int, int] | None, limit: int
) -> list[Change]:  # fmt: skip
    """Seal the open entries, then return entries after the key ``(txid, id)``, oldest first
    (from the oldest kept when ``after`` is None).

    Raises:
        FeedCursorExpired: entries after ``after`` were pruned (see :func:`prune_changes`).
    """
    key = (0, 0) if after is None else after
    params = {"t": key[0], "i": key[1], "n": limit}
    with translate_errors(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _FEED_LOCK})
        if after is not None:
            mark = conn.execute(text(_PRUNED_MARK)).first()
            if mark is not None and after < (int(mark[0]), int(mark[1])):
                raise FeedCursorExpired(
                    "entries after this cursor were pruned (kept: the feed_retention_days "
                    "setting); start again without a cursor and reconcile the series"
                )
        if engine.dialect.name == "postgresql":
            conn.execute(text(_FROM_LOG))
        conn.execute(text(_SEAL))
        rows = conn.execute(
            text(
                f"SELECT {_COLUMNS} WHERE c.txid IS NOT NULL AND c.kind <> '{_PRUNED}' "
                "AND (c.txid, c.id) > (:t, :i) ORDER BY c.txid, c.id LIMIT :n"
            ),
            params,
        ).all()
    return [_change(r) for r in rows]


def prune_changes(engine: Engine, before: datetime) -> int:
    """Delete the sealed entries recorded before ``before`` (and, on PostgreSQL, gather the
    change log into open entries, so it stays bounded while no client reads the feed).

    The newest entry pruned stays as a mark (kind ``pruned``, never listed), so a
    reader whose cursor is older than it learns that it missed entries instead of
    silently skipping them.

    Returns:
        The number of entries deleted.
    """
    stamp: Any = int(before.timestamp()) if engine.dialect.name == "sqlite" else before
    with translate_errors(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _FEED_LOCK})
            conn.execute(text(_FROM_LOG))  # bounded even when nobody reads: one per series
        last = conn.execute(
            text("SELECT txid, id FROM changes WHERE txid IS NOT NULL AND recorded_at < :b "
                 "ORDER BY txid DESC, id DESC LIMIT 1"), {"b": stamp},
        ).first()  # fmt: skip
        if last is None:
            return 0
        key = {"t": int(last[0]), "i": int(last[1])}
        deleted = conn.execute(
            text("DELETE FROM changes WHERE txid IS NOT NULL AND (txid, id) < (:t, :i)"), key
        ).rowcount
        conn.execute(text(f"UPDATE changes SET kind = '{_PRUNED}' WHERE id = :i"), key)
    return int(deleted or 0)


def _change(r: Any) -> Change:
    return Change(
        txid=int(r[0]), id=int(r[1]), kind=r[2], meter_id=r[3] or None, channel=r[4],
        anomaly_id=r[5] or None, first_at=from_stored(r[6]), last_at=from_stored(r[7]),
        rows=int(r[8]), status=r[9], recorded_at=from_stored(r[10]) or datetime.now(UTC),
    )  # fmt: skip
