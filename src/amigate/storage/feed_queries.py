"""The change feed: entries written by triggers (migration 0003), read in a safe order.

Entries are ordered by ``(txid, id)``. On PostgreSQL ``txid`` is the id of the
transaction that wrote the entry, and only entries of transactions older than
the oldest one still running are returned: every transaction that could still
commit has a larger id, so nothing can appear behind a cursor already handed
out. On SQLite (one writer at a time) the ingest transaction records its series
entries itself (:func:`record_sqlite`), and a reader first seals the open
entries with the next generation number, inside its own write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, text

from amigate.storage.engine import translate_errors


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


def record_sqlite(cursor: Any, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add the feed entries of rows just stored in a series table (SQLite, same transaction).

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


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def read_changes(engine: Engine, after: tuple[int, int], limit: int) -> list[Change]:
    """Entries after the key ``(txid, id)``, oldest first, at most ``limit``."""
    params = {"t": after[0], "i": after[1], "n": limit}
    with translate_errors(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text(
                f"SELECT {_COLUMNS} WHERE c.txid < "
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint "
                "AND (c.txid, c.id) > (:t, :i) ORDER BY c.txid, c.id LIMIT :n"
            ), params).all()  # fmt: skip
        else:
            conn.execute(text(_SEAL))
            rows = conn.execute(text(
                f"SELECT {_COLUMNS} WHERE c.txid IS NOT NULL AND (c.txid, c.id) > (:t, :i) "
                "ORDER BY c.txid, c.id LIMIT :n"
            ), params).all()  # fmt: skip
    return [_change(r) for r in rows]


def _change(r: Any) -> Change:
    return Change(
        txid=int(r[0]), id=int(r[1]), kind=r[2], meter_id=r[3] or None, channel=r[4],
        anomaly_id=r[5] or None, first_at=_time(r[6]), last_at=_time(r[7]), rows=int(r[8]),
        status=r[9], recorded_at=_time(r[10]) or datetime.now(UTC),
    )  # fmt: skip
