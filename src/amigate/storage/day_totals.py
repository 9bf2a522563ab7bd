"""Day totals: version-1 intervals added up per meter, channel, local day and tariff period.

A billing determinant over whole local days reads these instead of the
intervals: a meter-month is about 120 rows instead of 2,880, and a batch of
1,000 meters one indexed scan. They are a cache, never a source:

* built only for closed days (in the past by at least ``settle``) of timezones
  with a fixed UTC offset, and only for days whose intervals have no later
  versions (estimates and edits are read from the series instead);
* dropped by every write into their day, in the writing transaction (the series
  triggers of migrations 0004 and 0005 on PostgreSQL, the ingest transaction on
  SQLite), so a row present is always what the intervals add up to now;
* tagged with a digest of the schedule they were built for; rows of another
  schedule are ignored and replaced.

The sums are the same as ``billing_queries.period_groups`` computes from the
intervals, split by day; the tests check the two agree.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine, text

from amigate.storage import day_series
from amigate.storage.billing_queries import ESTIMATED_SQL, MISSING, Group, epoch_sql, period_case
from amigate.storage.driver_rows import fetch
from amigate.storage.engine import connected, translate_errors
from amigate.storage.id_lists import ids_text
from amigate.storage.ingest import time_encoder
from amigate.storage.types import from_stored

_LOG = logging.getLogger(__name__)
_DAY = 86_400
#: The builder's advisory lock ("amigate totals"), the same number as in migrations 0004-0005.
_LOCK = 0x616D_6967_746F_7473
_METER_BATCH = 1000


def schedule_key(ranges: Sequence[tuple[int, int, int]], offset_s: int, interval_s: int) -> str:
    """A digest of what the totals depend on: the period of each minute of the local day,
    the UTC offset and the interval length."""
    text_ = f"{offset_s}|{interval_s}|" + ",".join(f"{lo}-{hi}:{p}" for lo, hi, p in ranges)
    return hashlib.sha256(text_.encode()).hexdigest()[:16]


def _todo_cte(engine: Engine, cache: str = "day_totals") -> str:
    """The WITH entries defining ``todo``: the (meter, channel) pairs of ``:ids`` still to
    build for the day ``[:d, :e)`` (no row in ``cache`` yet, no interval versions), one
    probe each."""
    if engine.dialect.name == "sqlite":  # a probe of the versions' key per pair
        versioned = ""
        versions_of_pair = ("interval_versions v WHERE v.meter_id = m.id AND v.channel_id = c.id "
                            "AND v.ts >= :d AND v.ts < :e")  # fmt: skip
    else:  # one scan of the day's chunk: a correlated probe would visit every chunk
        versioned = ("versioned AS MATERIALIZED (SELECT DISTINCT meter_id, channel_id FROM "
                     "interval_versions WHERE ts >= :d AND ts < :e), ")  # fmt: skip
        versions_of_pair = "versioned w WHERE w.meter_id = m.id AND w.channel_id = c.id"
    return (
        f"{versioned}todo AS MATERIALIZED (SELECT m.id AS mid, c.id AS cid FROM meters m "
        "CROSS JOIN channels c WHERE m.id IN :ids "
        f"AND NOT EXISTS (SELECT 1 FROM {cache} t WHERE t.meter_id = m.id "
        "AND t.channel_id = c.id AND t.day_start = :d) "
        f"AND NOT EXISTS (SELECT 1 FROM {versions_of_pair}))"
    )


def _build_sql(engine: Engine, ranges: Sequence[tuple[int, int, int]], offset_s: int,
               interval_s: int, day_end: int) -> str:  # fmt: skip
    sqlite = engine.dialect.name == "sqlite"
    t = epoch_sql(engine, "i.ts")
    valued = f"i.value IS NOT NULL AND i.quality <> {MISSING}"
    regular = f"{valued} AND i.duration_s = {int(interval_s)}"
    estimated = f"{valued} AND i.quality IN ({ESTIMATED_SQL})"
    peak_at = "i.ts" if sqlite else (
        f"(array_agg(i.ts ORDER BY i.value DESC, i.ts) FILTER (WHERE {regular}))[1]"
    )  # fmt: skip
    # The WITH is inside the INSERT: SQLite reports no row count for a statement that
    # starts with WITH.
    return (
        "INSERT INTO day_totals (meter_id, channel_id, day_start, period, schedule, energy, "
        "intervals, missing, estimated, estimated_energy, covered_s, overhang_s, peak, peak_at) "
        f"WITH {_todo_cte(engine)} "
        "SELECT meter_id, channel_id, :d, p, :k, e, n, miss, est, est_e, cov, over, peak, "
        "CASE WHEN peak IS NULL THEN NULL ELSE peak_at END FROM ("
        f"SELECT i.meter_id, i.channel_id, CASE {period_case(t, offset_s, ranges)} END AS p, "
        f"coalesce(sum(CASE WHEN {valued} THEN i.value END), 0) AS e, "
        f"sum(CASE WHEN {valued} THEN 1 ELSE 0 END) AS n, "
        f"sum(CASE WHEN {valued} THEN 0 ELSE 1 END) AS miss, "
        f"sum(CASE WHEN {estimated} THEN 1 ELSE 0 END) AS est, "
        f"coalesce(sum(CASE WHEN {estimated} THEN i.value END), 0) AS est_e, "
        f"coalesce(sum(CASE WHEN {valued} THEN i.duration_s END), 0) AS cov, "
        f"coalesce(sum(CASE WHEN {valued} AND {t} + i.duration_s > {day_end} "
        f"THEN {t} + i.duration_s - {day_end} END), 0) AS over, "
        f"max(CASE WHEN {regular} THEN i.value END) AS peak, {peak_at} AS peak_at "
        # CROSS JOIN: SQLite keeps todo outside, reading each pair's day by its key.
        "FROM todo CROSS JOIN intervals i WHERE i.meter_id = todo.mid "
        "AND i.channel_id = todo.cid AND i.ts >= :d AND i.ts < :e "
        "GROUP BY i.meter_id, i.channel_id, p) g"
    )


class Built(NamedTuple):
    """What a build stored: day-total rows and day-series rows."""

    totals: int
    series: int


def build(
    engine: Engine,
    *,
    ranges: Sequence[tuple[int, int, int]],
    offset_s: int,
    interval_s: int,
    since: datetime,
    now: datetime,
    settle: timedelta = timedelta(hours=1),
    meter_ids: Sequence[int] | None = None,
    totals: bool = True,
) -> Built:
    """Build the missing day totals of the closed local days from ``since`` on, and in the
    same transactions their day series (``amigate.storage.day_series``); without
    ``totals``, the day series alone.

    Args:
        engine: the database.
        ranges: ``(first minute, end minute, period index)`` covering the local day.
        offset_s: the fixed UTC offset of local time, in seconds.
        interval_s: the regular interval length (maximum demand ignores longer spans).
        since: the first day built is the local day holding this instant.
        now: days ending after ``now - settle`` are not closed yet.
        settle: how long after its end a day is left to late reads.
        meter_ids: only these meters (default: all).
        totals: build the day totals too (not when days have no fixed length).

    Returns:
        The number of rows stored in each.
    """
    key = schedule_key(ranges, offset_s, interval_s)
    encode = time_encoder(engine)
    first = ((int(since.timestamp()) + offset_s) // _DAY) * _DAY - offset_s
    last = ((int((now - settle).timestamp()) + offset_s) // _DAY) * _DAY - offset_s  # excluded
    stored = series = 0
    started = time.perf_counter()
    with translate_errors(engine):
        with engine.begin() as conn:
            if totals:
                conn.execute(text("DELETE FROM day_totals WHERE schedule <> :k"), {"k": key})
            ids = list(meter_ids) if meter_ids is not None else [
                int(r[0]) for r in conn.execute(text("SELECT id FROM meters ORDER BY id"))
            ]  # fmt: skip
        todo = ids_text(engine, f"WITH {_todo_cte(engine)} SELECT DISTINCT mid FROM todo")
        series_todo = _todo_cte(engine, "day_series")
        for day in range(last - _DAY, first - 1, -_DAY):  # the newest first
            sql = ids_text(engine, _build_sql(engine, ranges, offset_s, interval_s, day + _DAY))
            for at in range(0, len(ids), _METER_BATCH):
                params = {"d": encode(datetime.fromtimestamp(day, UTC)), "k": key,
                          "e": encode(datetime.fromtimestamp(day + _DAY, UTC)),
                          "ids": ids[at:at + _METER_BATCH]}  # fmt: skip
                with engine.begin() as conn:
                    if engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
                        conn.execute(text("SET LOCAL jit = off"))  # compiling costs more here
                    series += day_series.build_day(conn, engine, series_todo, params)
                    if not totals:
                        continue
                    pending = [int(r[0]) for r in conn.execute(todo, params)]
                    if pending:  # most passes find every day built already
                        params["ids"] = pending
                        stored += conn.execute(sql, params).rowcount or 0
    if stored or series:
        _LOG.info("day totals: %d row(s) and %d day series built in %.1f s", stored, series,
                  time.perf_counter() - started)  # fmt: skip
    return Built(stored, series)


def read_groups(
    engine: Engine,
    meter_ids: Sequence[int],
    cid: int,
    start: datetime,
    end: datetime,
    *,
    ranges: Sequence[tuple[int, int, int]],
    offset_s: int,
    interval_s: int,
    holidays: Sequence[int] = (),
    weekends: bool = False,
    holiday_period: int | None = None,
) -> tuple[set[int], list[Group]]:
    """The period groups of the meters whose every day of ``[start, end)`` has totals.

    ``start`` and ``end`` must be local midnights (else nothing is covered). The
    groups add up to what ``billing_queries.period_groups`` returns for the same
    meters. A meter counts as covered when one tariff period has a row on every day
    (the builder writes a row for each period holding intervals, so a meter read all
    day has them all); anything less is summed from the intervals instead.

    Returns:
        ``(meters covered, their groups)``.
    """
    lo, hi = int(start.timestamp()), int(end.timestamp())
    days = (hi - lo) // _DAY
    if (lo + offset_s) % _DAY or (hi + offset_s) % _DAY or days <= 0 or not meter_ids:
        return set(), []
    key = schedule_key(ranges, offset_s, interval_s)
    encode = time_encoder(engine)
    params = {"ids": list(meter_ids), "c": cid, "lo": encode(start), "hi": encode(end), "k": key,
              "last": encode(datetime.fromtimestamp(hi - _DAY, UTC)), "lo_s": lo}  # fmt: skip
    scale = _peak_scale(lo, hi)
    sql = _read_sql(engine, offset_s, holidays, weekends, holiday_period,
                    [index for _lo, _hi, index in ranges], scale)  # fmt: skip
    query = ids_text(engine, sql)
    with connected(engine) as conn:
        rows = fetch(conn, query, params)
    sqlite = engine.dialect.name == "sqlite"
    days_with: dict[int, dict[int, int]] = {}
    out = []
    unpacked: set[int] = set()
    for m, p, special, n_days, e, n, miss, est, est_e, cov, peak, at in rows:
        by_period = days_with.setdefault(int(m), {})
        by_period[int(p)] = by_period.get(int(p), 0) + int(n_days)
        when = None
        if peak is not None and sqlite:
            when = from_stored(at)
        elif peak is not None:  # PostgreSQL: the peak and its time in one number
            if at is None or int(at) // scale != int(peak):  # the peak did not fit
                unpacked.add(int(m))
            else:
                when = datetime.fromtimestamp(lo + scale - 1 - int(at) % scale, UTC)
        period = holiday_period if special and holiday_period is not None else int(p)
        out.append(Group(int(m), period, int(e), int(n),
                         int(miss), int(est), int(est_e), int(cov),
                         None if peak is None else int(peak), when))  # fmt: skip
    covered = {m for m, counts in days_with.items()
               if max(counts.values()) == days and m not in unpacked}  # fmt: skip
    return covered, [g for g in out if g.meter_id in covered]


def _peak_scale(lo: int, hi: int) -> int:
    """PostgreSQL reads a group's peak and its time as one bigint, ``peak × scale + (scale
    - 1 - seconds from the period start)``, whose max() is the highest peak at its earliest
    time (no sort per group). The scale is the power of two above the period's length:
    a month leaves peaks up to 2.2 million kWh an interval; a larger one is not packed
    (the packed maximum is then another row's), and its meter is summed from the
    intervals. Numeric arithmetic, which fits any peak, made the read of 1,000 meters
    20–30 % slower."""
    return 1 << max(1, hi - lo).bit_length()


def _read_sql(engine: Engine, offset_s: int, holidays: Sequence[int], weekends: bool,
              holiday_period: int | None, periods: Sequence[int], scale: int) -> str:  # fmt: skip
    """The statement of :func:`read_groups`: one row per meter, tariff period and kind of
    day (1: billed in the holiday period, else 0)."""
    sqlite = engine.dialect.name == "sqlite"
    local_day = f"(({epoch_sql(engine, 'day_start')} + {int(offset_s)}) / {_DAY})"
    special = []
    if holiday_period is not None and holidays:
        special.append(f"{local_day} IN ({', '.join(str(int(d)) for d in holidays)})")
    if holiday_period is not None and weekends:  # 1970-01-01 was a Thursday (weekday 3)
        special.append(f"({local_day} + 3) % 7 >= 5")
    holiday = " OR ".join(special)
    # SQLite: with exactly one max(), the bare column comes from the row holding it (the
    # first in key order: the earliest day).
    fits = (1 << 63) // scale - 1
    peak = "max(peak), peak_at" if sqlite else (
        f"max(peak), max(CASE WHEN peak BETWEEN {-fits} AND {fits} THEN peak * {scale} + "
        f"({scale - 1} - ({epoch_sql(engine, 'peak_at')} - :lo_s)) END)"
    )  # fmt: skip
    sums = (
        "count(*), sum(energy), sum(intervals), sum(missing), sum(estimated), "
        "sum(estimated_energy), "
        "sum(covered_s) - sum(CASE WHEN day_start = :last THEN overhang_s ELSE 0 END), "
        f"{peak} "
    )
    window = (
        "FROM day_totals WHERE meter_id IN :ids AND channel_id = :c "
        "AND day_start >= :lo AND day_start < :hi AND schedule = :k"
    )
    if not sqlite:  # groups the rows as they come in ix_day_totals_meter_period order
        flag = f"CASE WHEN {holiday} THEN 1 ELSE 0 END" if holiday else "0"
        return (f"SELECT meter_id, period, {flag} AS h, {sums}{window} "
                "GROUP BY meter_id, period, h")  # fmt: skip
    # SQLite groups rows that arrive in group order without sorting them: each period of a
    # meter is read from ix_day_totals_meter_period in turn (the IN list lets it seek to
    # each period's days), ordinary days and holidays in two passes.
    each = f"{window} AND period IN ({', '.join(str(int(p)) for p in sorted(set(periods)))})"
    if not holiday:
        return f"SELECT meter_id, period, 0 AS h, {sums}{each} GROUP BY meter_id, period"
    return (
        f"SELECT meter_id, period, 0 AS h, {sums}{each} AND NOT ({holiday}) "
        "GROUP BY meter_id, period UNION ALL "
        f"SELECT meter_id, period, 1 AS h, {sums}{each} AND ({holiday}) "
        "GROUP BY meter_id, period"
    )
