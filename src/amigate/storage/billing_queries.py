"""Billing determinants of many meters added up in the database (one scan for a batch).

Used for timezones whose UTC offset does not change within the period (no
daylight saving time, such as Asia/Shanghai): local day and minute are then
plain arithmetic on epoch seconds, the same on both backends. Intervals are
grouped by meter and time-of-use period (holidays and weekends included).
Only version 1 rows are read: meters with later versions in the period are
computed from their series instead (see ``versioned_meters``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from amigate.domain import Quality
from amigate.storage.driver_rows import fetch
from amigate.storage.engine import connected
from amigate.storage.id_lists import ids_text
from amigate.storage.ingest import time_encoder
from amigate.storage.types import from_stored

MISSING = int(Quality.MISSING)
#: The qualities counted as estimated or substituted, as an SQL list.
ESTIMATED_SQL = ", ".join(str(int(q)) for q in (Quality.ESTIMATED, Quality.SUBSTITUTED,
                                             Quality.FINAL_SUBSTITUTE))  # fmt: skip


@dataclass(slots=True)
class Group:
    """Version 1 intervals of one meter in one time-of-use period.

    ``peak_at`` is the start of the earliest regular interval with the peak value.
    """

    meter_id: int
    period: int
    energy: int
    intervals: int
    missing: int
    estimated: int
    estimated_energy: int
    covered_s: int
    peak: int | None
    peak_at: datetime | None


def epoch_sql(engine: Engine, column: str = "ts") -> str:
    """SQL for a stored time column as integer epoch seconds."""
    if engine.dialect.name == "postgresql":  # date_part is a double; extract, a slow numeric
        return f"CAST(date_part('epoch', {column}) AS bigint)"
    return column


def period_case(epoch: str, offset_s: int, ranges: Sequence[tuple[int, int, int]]) -> str:
    """The ``WHEN`` branches giving the tariff period of the epoch-seconds SQL ``epoch``."""
    minute = f"((({epoch} + {int(offset_s)}) % 86400) / 60)"
    return " ".join(f"WHEN {minute} < {int(hi)} THEN {int(index)}" for _lo, hi, index in ranges)


def versioned_meters(
    engine: Engine, meter_ids: Sequence[int], cid: int, start: datetime, end: datetime
) -> set[int]:
    """The meters among ``meter_ids`` with interval versions (2+) starting in the period."""
    encode = time_encoder(engine)
    query = ids_text(engine,
        "SELECT DISTINCT meter_id FROM interval_versions WHERE meter_id IN :ids "
        "AND channel_id = :c AND ts >= :lo AND ts < :hi"
    )  # fmt: skip
    params = {"ids": list(meter_ids), "c": cid, "lo": encode(start), "hi": encode(end)}
    with connected(engine) as conn:
        return {int(r[0]) for r in fetch(conn, query, params)}


def period_groups(
    engine: Engine,
    meter_ids: Sequence[int],
    cid: int,
    start: datetime,
    end: datetime,
    *,
    offset_s: int,
    ranges: Sequence[tuple[int, int, int]],
    holidays: Sequence[int] = (),
    weekends: bool = False,
    holiday_period: int | None = None,
    interval_s: int,
) -> list[Group]:
    """Version 1 intervals grouped by meter and time-of-use period.

    Args:
        engine: the database.
        meter_ids: the meters.
        cid: the channel id.
        start: the period start.
        end: the period end (excluded).
        offset_s: the (constant) UTC offset of local time, in seconds.
        ranges: ``(first minute, end minute, period index)`` covering the local day.
        holidays: local days (days since 1970-01-01) billed in ``holiday_period``.
        weekends: Saturdays and Sundays are billed in ``holiday_period`` too.
        holiday_period: the period index of holidays (None: no holidays).
        interval_s: the regular interval length (maximum demand ignores longer spans).
    """
    sqlite = engine.dialect.name == "sqlite"
    t = epoch_sql(engine)
    local = f"({t} + {int(offset_s)})"
    period = period_case(t, offset_s, ranges)
    special = []
    if holiday_period is not None and holidays:
        special.append(f"{local} / 86400 IN ({', '.join(str(int(d)) for d in holidays)})")
    if holiday_period is not None and weekends:  # 1970-01-01 was a Thursday (weekday 3)
        special.append(f"({local} / 86400 + 3) % 7 >= 5")
    if special:
        period = f"WHEN {' OR '.join(special)} THEN {int(holiday_period or 0)} " + period
    valued = f"value IS NOT NULL AND quality <> {MISSING}"
    least = "min" if sqlite else "least"
    end_s = int(end.timestamp())
    # The start of the earliest interval with the peak value. SQLite: with exactly one
    # max(), a bare column comes from the row holding the max (the first such row in key
    # order, i.e. the earliest start).
    regular = f"{valued} AND duration_s = {int(interval_s)}"
    bare = ", ts" if sqlite else (
        f", (array_agg(ts ORDER BY value DESC, ts) FILTER (WHERE {regular}))[1]"
    )  # fmt: skip
    query = ids_text(engine,
        f"SELECT meter_id, CASE {period} END AS p, "
        f"coalesce(sum(CASE WHEN {valued} THEN value END), 0), "
        f"sum(CASE WHEN {valued} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {valued} THEN 0 ELSE 1 END), "
        f"sum(CASE WHEN {valued} AND quality IN ({ESTIMATED_SQL}) THEN 1 ELSE 0 END), "
        f"coalesce(sum(CASE WHEN {valued} AND quality IN ({ESTIMATED_SQL}) THEN value END), 0), "
        f"coalesce(sum(CASE WHEN {valued} THEN {least}(duration_s, {end_s} - {t}) END), 0), "
        f"max(CASE WHEN {regular} THEN value END){bare} "
        "FROM intervals WHERE meter_id IN :ids AND channel_id = :c AND ts >= :lo AND ts < :hi "
        "GROUP BY meter_id, p"
    )  # fmt: skip
    encode = time_encoder(engine)
    params = {"ids": list(meter_ids), "c": cid, "lo": encode(start), "hi": encode(end)}
    out = []
    with connected(engine) as conn:
        for row in fetch(conn, query, params):
            m, p, e, n, miss, est, est_e, cov, peak = row[:9]
            at = from_stored(row[9]) if peak is not None else None
            out.append(Group(int(m), int(p), int(e), int(n), int(miss), int(est), int(est_e),
                             int(cov), None if peak is None else int(peak), at))  # fmt: skip
    return out
