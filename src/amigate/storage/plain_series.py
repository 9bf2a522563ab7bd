"""The fast path of the interval series: the version-1 intervals of one series as text
columns concatenated by the database, when they are the whole answer."""

from __future__ import annotations

import operator
from datetime import UTC, datetime
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
#: The count and each column of version-1 rows concatenated by the database (in start
#: order: see below), with the packed number for the other three (see :func:`_unpacked`).
AGGREGATES = {
    "sqlite": (
        f"count(*), group_concat(ts), group_concat(coalesce(value, 'n')), "
        f"group_concat({_PACKED})"
    ),
    "postgresql": (
        "count(*), string_agg(CAST(CAST(date_part('epoch', ts) AS bigint) AS text), ','), "
        "string_agg(coalesce(CAST(value AS text), 'n'), ','), "
        f"string_agg(CAST({_PACKED} AS text), ',')"
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


def run_starts(first: str, count: int, step: str) -> list[str]:
    """The starts of a run as the columns of a run hold them: the same string objects
    while the run is cached, so comparing the columns' starts with them (fastjson) is
    an identity check per start instead of a text comparison."""
    return _RUNS[first, count, step].starts


def series_columns(count: int, starts: str, values: str, packed: str) -> PlainColumns:
    """The columns of a :data:`AGGREGATES` row, in start order.

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
    """The columns of a :data:`AGGREGATES` row. Packing three columns into one saves SQLite
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
    5 ms a series with 8 threads). The days the day series hold (``day_series``) are
    read from there, one row a day; the database concatenates each column of the rest
    (the whole range when no day is held), in one step a stretch.

    Returns:
        The columns (at most ``limit`` rows) and whether more rows follow, or None.
    """
    encode = time_encoder(engine)
    lo, hi = start if after is None else max(start, after), end
    params: dict[str, Any] = {"m": meter_id, "c": cid, "lo": encode(lo), "hi": encode(hi),
                              "n": int(limit) + 1}  # fmt: skip
    if after is not None:
        params["after"] = encode(after)
    dialect = engine.dialect.name
    with one_connection(engine) as conn:  # on SQLite every statement reads one snapshot
        head = fetch(conn, _head_statement(dialect, not original, after is not None), params)
        if any(row[1] < 0 for row in head):  # the probe's row: a later version in the range
            return None
        lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
        days = _usable_days(head, lo_s, hi_s)
        stretches = _stretches(lo_s, hi_s, days, int(limit) + 1)
        if len(stretches) > _MAX_STRETCHES:  # scattered days: the whole range at once
            days, stretches = [], [(lo_s, hi_s)]
        if not stretches and days:
            run = _one_run(days)
            if run is not None:
                return _cut(run, limit)
        parts = [_day_part(*day) for day in days]
        if stretches:
            for k, (a, b) in enumerate(stretches):
                params[f"a{k}"] = encode(datetime.fromtimestamp(a, UTC))
                params[f"b{k}"] = encode(datetime.fromtimestamp(b, UTC))
            statement = _stretch_statement(dialect, len(stretches), after is not None)
            for k, count, starts, values, packed in fetch(conn, statement, params):
                if count:
                    parts.append(_Part(stretches[k][0], int(count), str(starts), str(values),
                                       str(packed)))  # fmt: skip
    parts.sort()
    total = sum(part.rows for part in parts)
    if not total:
        return PlainColumns([], [], [], [], []), False
    _at, _rows, starts, values, packed = zip(*parts, strict=True)
    return _cut(series_columns(total, ",".join(starts), ",".join(values), ",".join(packed)),
                limit)  # fmt: skip


def _cut(columns: PlainColumns, limit: int) -> tuple[PlainColumns, bool]:
    """The first ``limit`` rows of ``columns``, and whether there were more."""
    if len(columns.start) > limit:
        return PlainColumns(*(c[:limit] for c in columns)), True
    return columns, False


class _Day(NamedTuple):
    """A row of ``day_series`` (see ``storage.models.DaySeriesRow``)."""

    start_s: int  # the day's start, epoch seconds
    rows: int
    first_s: int
    step_s: int
    starts: str | None
    packed: str
    values: str


class _Part(NamedTuple):
    """Consecutive version-1 rows of a series: a day of ``day_series`` or a stretch read
    from the intervals, as texts (each comma-separated)."""

    at_s: int  # where the part lies: its day's or stretch's start, epoch seconds
    rows: int
    starts: str
    values: str
    packed: str


#: More stretches between held days than this read the whole range in one statement.
_MAX_STRETCHES = 4
_DAY = 86_400


def _usable_days(head: list[tuple[Any, ...]], lo: int, hi: int) -> list[_Day]:
    """The ``day_series`` rows of :func:`_head_statement` in order, skipping any that
    overlaps one before it (rows built for another UTC offset)."""
    days = []
    end = lo
    for day, count, first, step, starts, packed, values in sorted(head):  # day: epoch seconds
        if day >= end and day + _DAY <= hi:
            days.append(_Day(int(day), int(count), int(first), int(step), starts, packed,
                             values))  # fmt: skip
            end = day + _DAY
    return days


def _one_run(days: list[_Day]) -> PlainColumns | None:
    """The columns of ``days`` when together they are one run: each read every interval,
    with one step and code, each beginning where the one before ended (the usual
    meter-month: no text is made or compared but the values')."""
    head = days[0]
    at = head.first_s
    for day in days:
        if not day.step_s or day.step_s != head.step_s or day.packed != head.packed or (
            day.first_s != at
        ):  # fmt: skip
            return None
        at += day.rows * day.step_s
    total = sum(day.rows for day in days)
    duration, quality, source = _codes(head.packed)
    run = _RUNS[str(head.first_s), total, duration]
    return PlainColumns(list(run.starts), [duration] * total,
                        ",".join(day.values for day in days).split(","), [quality] * total,
                        [source] * total)  # fmt: skip


def _day_part(day: int, count: int, first: int, step: int, starts: str | None, packed: str,
              values: str) -> _Part:  # fmt: skip
    """A ``day_series`` row as texts: a day read every interval keeps only its first start
    and one code, and its texts (the same for every meter) are made once."""
    if step:
        return _Part(day, count, run_text(first, count, step), values, _repeated(packed, count))
    return _Part(day, count, starts or "", values, packed)


def _stretches(lo: int, hi: int, days: list[_Day], need: int) -> list[tuple[int, int]]:
    """The stretches of ``[lo, hi)`` outside ``days`` that may hold the first ``need`` rows:
    none after the days already holding that many."""
    out = []
    at, held = lo, 0
    for day in days:
        if day.start_s > at:
            out.append((at, day.start_s))
        at = day.start_s + _DAY
        held += day.rows
        if held >= need:
            return out
    if at < hi:
        out.append((at, hi))
    return out


@lru_cache(maxsize=512)
def run_text(first: int, count: int, step: int) -> str:
    """``count`` starts every ``step`` seconds from ``first``, comma-separated."""
    return ",".join(map(str, range(first, first + count * step, step)))


@lru_cache(maxsize=64)
def _repeated(code: str, count: int) -> str:
    return ",".join(repeat(code, count))


_WINDOW = "meter_id = :m AND channel_id = :c AND ts >= :lo AND ts < :hi"


@lru_cache(maxsize=8)
def _head_statement(dialect: str, probe: bool, after: bool) -> TextClause:
    """The ``day_series`` rows of the days wholly in the range, up to the one holding the
    ``:n``-th row; with ``probe``, also a row with count -1 when a later version starts in
    the range."""
    day = "day_start" if dialect == "sqlite" else "CAST(date_part('epoch', day_start) AS bigint)"
    last = ":hi - 86400" if dialect == "sqlite" else "CAST(:hi AS timestamptz) - interval '1 day'"
    held = (
        f"SELECT {day}, n, first_s, step_s, starts, packed, vals FROM ("
        "SELECT day_start, n, first_s, step_s, starts, packed, vals, "
        "sum(n) OVER (ORDER BY day_start) - n AS ahead FROM day_series "
        f"WHERE meter_id = :m AND channel_id = :c AND day_start >= :lo AND day_start <= {last}"
        f"{' AND day_start > :after' if after else ''}) d WHERE ahead < :n"
    )
    if not probe:
        return text(held)
    return text(f"{held} UNION ALL SELECT NULL, -1, 0, 0, NULL, '', '' FROM ("
                f"SELECT 1 FROM interval_versions WHERE {_WINDOW} LIMIT 1) v")  # fmt: skip


@lru_cache(maxsize=32)
def _stretch_statement(dialect: str, stretches: int, after: bool) -> TextClause:
    """The version-1 columns of each stretch ``[:a<k>, :b<k>)``, one row each, tagged ``k``."""
    selects = []
    for k in range(stretches):
        rows = ("SELECT ts, duration_s, value, quality, source FROM intervals WHERE "
                f"meter_id = :m AND channel_id = :c AND ts >= :a{k} AND ts < :b{k}")  # fmt: skip
        if after:  # version 1 sorts first: the one at the cursor's start is behind it
            rows += " AND ts > :after"
        rows += " ORDER BY ts LIMIT :n"
        selects.append(f"SELECT {k}, {AGGREGATES[dialect]} FROM ({rows}) s{k}")
    return text(" UNION ALL ".join(selects))


def in_start_order(columns: PlainColumns) -> PlainColumns:
    """``columns`` sorted by start. The databases concatenate in the order of the subquery
    in practice (see :data:`AGGREGATES`), which is not left to chance.

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
