"""The fast path of the interval series: the version-1 intervals of one series as text
columns concatenated by the database, when they are the whole answer."""

from __future__ import annotations

import operator
from datetime import datetime
from functools import lru_cache
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy import Engine, TextClause, text

from amigate.storage.driver_rows import fetch
from amigate.storage.engine import one_connection
from amigate.storage.ingest import time_encoder


class PlainColumns(NamedTuple):
    """Version-1 intervals by start, one list per column, each value the database's decimal
    text of the stored integer (a missing value is ``"n"``)."""

    start: list[str]  # epoch seconds
    duration_s: list[str]
    value: list[str]  # micro-units
    quality: list[str]
    source: list[str]


#: The duration, quality and source of an interval as one number: the duration alone
#: (e.g. "900") for an actual, polled one. Quality and source codes are below 256.
_PACKED = "(quality * 256 + source) * 4294967296 + duration_s"
#: Each column of a version-1 series concatenated by the database (in start order: see
#: below), with the packed number for the other three (see :func:`_unpacked`).
_COLUMNS = {
    "sqlite": (
        "SELECT count(*), group_concat(ts), group_concat(coalesce(value, 'n')), "
        f"group_concat({_PACKED}) FROM ({{rows}})"
    ),
    "postgresql": (
        "SELECT count(*), string_agg(CAST(CAST(date_part('epoch', ts) AS bigint) AS text), ','), "
        "string_agg(coalesce(CAST(value AS text), 'n'), ','), "
        f"string_agg(CAST({_PACKED} AS text), ',') FROM ({{rows}}) s"
    ),
}
#: Neither database is asked to order the aggregates' input (SQLite before 3.44 cannot;
#: on PostgreSQL an ``ORDER BY`` in each aggregate sorted a meter-month's rows three
#: times, 0.6–1 ms of the 4–6 ms its statement took). Both concatenate in the order of
#: the subquery, which scans the key in order, and :func:`series_columns` proves or
#: restores that order. The aggregates of one row all see the rows in one order.


class _Run(NamedTuple):
    text: str
    starts: list[str]


class _Runs(dict[tuple[str, int, str], _Run]):
    """The starts of a series read every interval, as the database concatenates them and
    as a list, by (first start, count, duration): the meters of one period share them."""

    def __missing__(self, key: tuple[str, int, str]) -> _Run:
        if len(self) >= 4:  # a month of 15-minute starts is about 200 kB
            self.clear()
        first, count, step = int(key[0]), key[1], int(key[2])
        starts = [str(first + i * step) for i in range(count)]
        found = self[key] = _Run(",".join(starts), starts)
        return found


_RUNS = _Runs()


def series_columns(count: int, starts: str, values: str, packed: str) -> PlainColumns:
    """The columns of a :data:`_COLUMNS` row, in start order.

    A series read every interval (one duration, quality and source; one start every
    duration) is recognised by comparing its texts with the expected ones, which also
    proves its order: its starts are not split, converted or compared one by one (0.25
    instead of 0.95 ms for a meter-month). Any other series is split and sorted if needed.
    """
    first_packed = packed.split(",", 1)[0]
    if packed == ",".join(repeat(first_packed, count)):
        duration, quality, source = _codes(first_packed)
        first, last = starts.split(",", 1)[0], starts.rsplit(",", 1)[-1]
        if int(last) - int(first) == (count - 1) * int(duration):  # else no run: not cached
            run = _RUNS[first, count, duration]
            if starts == run.text:
                return PlainColumns(list(run.starts), [duration] * count, values.split(","),
                                    [quality] * count, [source] * count)  # fmt: skip
    return in_start_order(_unpacked(starts, values, packed))


def _unpacked(starts: str, values: str, packed: str) -> PlainColumns:
    """The columns of a :data:`_COLUMNS` row. Packing three columns into one saves SQLite
    two aggregates; they are the same in every interval of a series read every interval,
    which then needs no work per interval here."""
    start = starts.split(",")
    packed_list = packed.split(",")
    if packed_list.count(packed_list[0]) == len(packed_list):
        duration, quality, source = _codes(packed_list[0])
        count = len(start)
        return PlainColumns(start, [duration] * count, values.split(","), [quality] * count,
                            [source] * count)  # fmt: skip
    codes = list(map(_codes, packed_list))
    return PlainColumns(start, [c[0] for c in codes], values.split(","), [c[1] for c in codes],
                        [c[2] for c in codes])  # fmt: skip


@lru_cache(maxsize=1024)
def _codes(packed: str) -> tuple[str, str, str]:
    """Duration, quality and source of a :data:`_PACKED` number, as text."""
    small, duration = divmod(int(packed), 4294967296)
    quality, source = divmod(small, 256)
    return str(duration), str(quality), str(source)


def plain_series(
    engine: Engine, meter_id: int, cid: int, start: datetime, end: datetime, *,
    original: bool, after: datetime | None = None, limit: int,
) -> tuple[PlainColumns, bool] | None:  # fmt: skip
    """The version-1 intervals of one series as text columns, when they are the whole answer:
    ``original`` asked for, or no later version starts in the range (else None).

    The fast path of the interval series. A meter-month is 2,880 rows: fetched row by
    row, SQLite's driver gives up and takes back the interpreter lock for each row, and
    under concurrent requests that hand-over cost more than the query (22 ms instead of
    5 ms a series with 8 threads). The database concatenates each column instead, in
    one step.

    Returns:
        The columns (at most ``limit`` rows) and whether more rows follow, or None.
    """
    encode = time_encoder(engine)
    low = start if after is None else max(start, after)
    params: dict[str, Any] = {"m": meter_id, "c": cid, "lo": encode(low), "hi": encode(end),
                              "n": int(limit) + 1}  # fmt: skip
    if after is not None:
        params["after"] = encode(after)
    probe, columns_of = _plain_statements(engine.dialect.name, after is not None)
    with one_connection(engine) as conn:  # on SQLite the probe and the rows: one snapshot
        if not original and fetch(conn, probe, params):
            return None
        found = fetch(conn, columns_of, params)[0]
    if not found[0]:
        return PlainColumns([], [], [], [], []), False
    columns = series_columns(int(found[0]), *(str(c) for c in found[1:]))
    if len(columns.start) > limit:
        return PlainColumns(*(c[:limit] for c in columns)), True
    return columns, False


@lru_cache(maxsize=8)
def _plain_statements(dialect: str, after: bool) -> tuple[TextClause, TextClause]:
    """The statements of :func:`plain_series`: whether a later version starts in the range,
    and the version-1 columns (after a cursor's start or not)."""
    window = "meter_id = :m AND channel_id = :c AND ts >= :lo AND ts < :hi"
    rows = f"SELECT ts, duration_s, value, quality, source FROM intervals WHERE {window}"
    if after:  # version 1 sorts first: the one at the cursor's start is behind it
        rows += " AND ts > :after"
    rows += " ORDER BY ts LIMIT :n"
    probe = text(f"SELECT 1 FROM interval_versions WHERE {window} LIMIT 1")
    return probe, text(_COLUMNS[dialect].format(rows=rows))


def in_start_order(columns: PlainColumns) -> PlainColumns:
    """``columns`` sorted by start. The databases concatenate in the order of the subquery
    in practice (see :data:`_COLUMNS`), which is not left to chance.

    Starts of one length compare as text like their numbers (0.4 ms for a meter-month,
    against 1.2 as integers); other series are compared as integers."""
    starts = columns.start
    if len(set(map(len, starts))) <= 1:
        if all(map(operator.lt, starts, starts[1:])):
            return columns
    else:
        numbers = list(map(int, starts))
        if all(map(operator.lt, numbers, numbers[1:])):
            return columns
    ordered = sorted(zip(map(int, starts), *columns, strict=True))
    return PlainColumns(*([row[i] for row in ordered] for i in range(1, 6)))
