"""Day series: the version-1 intervals of a meter, channel and closed local day as the text
columns of :mod:`amigate.storage.plain_series`, so a meter-month series reads 30 rows
instead of 2,880.

A cache, never a source, kept like the day totals (``amigate.storage.day_totals``),
whose builder stores them in the same pass and transaction:

* built only for closed days whose intervals have no later versions;
* dropped by every write into their day, in the writing transaction (the series
  trigger of migration 0007 on PostgreSQL, the ingest transaction on SQLite), so a
  row present is always what the intervals are now.

A row holds the intervals starting in ``[day_start, day_start + 1 day)``, whatever
the timezone it was built for: a reader uses the rows lying wholly in its range and
reads the rest from the intervals (``plain_series``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, text

from amigate.storage.driver_rows import fetch
from amigate.storage.id_lists import ids_text
from amigate.storage.plain_series import AGGREGATES, PlainColumns, run_text, series_columns


def build_day(conn: Connection, engine: Engine, todo_cte: str, params: Mapping[str, Any]) -> int:
    """Store the day series of the pairs ``todo_cte`` finds for the day ``[:d, :e)`` (bound
    as the driver takes them), in the caller's transaction (the day totals' builder,
    under its lock).

    Returns:
        The number of rows stored.
    """
    found = fetch(conn, _pending(engine, todo_cte), params)
    rows = [_row(int(m), int(c), params["d"], series_columns(int(n), str(s), str(v), str(p)))
            for m, c, n, s, v, p in found]  # fmt: skip
    if rows:
        conn.execute(_INSERT, rows)
    return len(rows)


_INSERT = text(
    "INSERT INTO day_series (meter_id, channel_id, day_start, n, first_s, step_s, starts, packed, "
    "vals) VALUES (:meter_id, :channel_id, :day_start, :n, :first_s, :step_s, :starts, :packed, "
    ":vals)"
)


def _pending(engine: Engine, todo_cte: str) -> TextClause:
    """The version-1 columns of each pending pair's day, one row per pair."""
    return ids_text(engine, (
        f"WITH {todo_cte} SELECT i.meter_id, i.channel_id, {AGGREGATES[engine.dialect.name]} "
        # CROSS JOIN: SQLite keeps todo outside, reading each pair's day by its key.
        "FROM todo CROSS JOIN intervals i WHERE i.meter_id = todo.mid "
        "AND i.channel_id = todo.cid AND i.ts >= :d AND i.ts < :e "
        "GROUP BY i.meter_id, i.channel_id"
    ))  # fmt: skip


def _row(meter_id: int, channel_id: int, day: Any, columns: PlainColumns) -> dict[str, Any]:
    """The ``day_series`` row of one day's columns (in start order): a day read every
    interval keeps its first start, its step and one packed code."""
    starts = columns.start
    packed = [_pack(d, q, s) for d, q, s in zip(columns.duration_s, columns.quality,
                                                 columns.source, strict=True)]  # fmt: skip
    first, count, step = int(starts[0]), len(starts), int(columns.duration_s[0])
    joined = ",".join(starts)
    regular = packed.count(packed[0]) == count and run_text(first, count, step) == joined
    return {
        "meter_id": meter_id, "channel_id": channel_id, "day_start": day, "n": count,
        "first_s": first, "step_s": step if regular else 0, "starts": None if regular else joined,
        "packed": packed[0] if regular else ",".join(packed), "vals": ",".join(columns.value),
    }  # fmt: skip


def _pack(duration: str, quality: str, source: str) -> str:
    """The packed code of ``plain_series`` (duration, quality and source in one number)."""
    return str((int(quality) * 256 + int(source)) * 4294967296 + int(duration))
