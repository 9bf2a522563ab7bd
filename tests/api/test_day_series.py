"""Day series: a series read partly or wholly from them is the series the intervals hold,
they are what the API reads for whole days, and any write into a day drops its row."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from amigate.api.v1 import fastjson
from amigate.api.v1.intervals import interval_out
from amigate.billing import totals
from amigate.domain import Interval, Quality, Source
from amigate.storage import Store, api_queries, day_series, day_totals, plain_series
from amigate.tou import TouSchedule
from tests.api.conftest import (
    INTERVAL_SPECS,
    JAN1,
    Api,
    IntervalSpec,
    Q,
    add_meter,
    make_api,
    spec_intervals,
)

D = Decimal
DAY = timedelta(days=1)
SHANGHAI = 8 * 3600  # JAN1 is a local midnight there
LATER = JAN1 + timedelta(days=10)
#: The advisory lock the day totals' builder holds (migrations 0004, 0005 and 0007).
BUILDER_LOCK = 0x616D_6967_746F_7473
_METERS = itertools.count(5000)

#: What a day of a random series holds (see :func:`_day_rows`).
DAY_KINDS = st.one_of(
    st.sampled_from(["run", "run", "empty", "edited", "gappy", "estimated", "all estimated",
                     "late", "early"]),
    st.lists(INTERVAL_SPECS, min_size=1, max_size=8),
)  # fmt: skip
DayKind = str | list[IntervalSpec]
#: Slots from JAN1: a local midnight as often as not.
EDGES = st.one_of(st.integers(-4, 8 * 96 + 4), st.sampled_from([96 * d for d in range(9)]))


def _build(store: Store, meter: int | None = None, offset_s: int = SHANGHAI) -> None:
    classifier = TouSchedule().classifier(ZoneInfo("Asia/Shanghai"))
    day_totals.build(store.engine, ranges=totals.period_ranges(classifier), offset_s=offset_s,
                     interval_s=900, since=JAN1 - DAY, now=LATER,
                     meter_ids=None if meter is None else [meter])  # fmt: skip


def _day_rows(meter: int, day: int, kind: DayKind) -> list[Interval]:
    """One local day: 96 intervals read every 15 minutes ("run"), none, a run with a later
    version of one interval ("edited"), with two slots never read ("gappy"), with one
    estimated interval ("estimated"), all estimated, read from 02:30 on ("late") or until
    21:30 ("early"), or random intervals from a 10-minute offset on. The runs, late,
    early and all-estimated days are each read every interval (held as a first start
    and a step); together they are one run only when their codes agree and each begins
    where the one before ended."""
    start = JAN1 + day * DAY
    if isinstance(kind, list):
        return spec_intervals(meter, kind, start, start + timedelta(minutes=10))
    if kind == "empty":
        return []
    slots = {"gappy": [i for i in range(96) if i not in (3, 50)], "late": range(10, 96),
             "early": range(86)}.get(kind, range(96))  # fmt: skip
    estimated = {"quality": Quality.ESTIMATED, "source": Source.ESTIMATION}
    rows = [Interval(meter_id=meter, channel="1.8.0", start=start + i * Q,
                     end=start + (i + 1) * Q, value=D((i * 7 + day) % 89) / 4,
                     **(estimated if kind == "all estimated" else {}))
            for i in slots]  # fmt: skip
    if kind == "estimated":
        rows[20] = Interval(meter_id=meter, channel="1.8.0", start=rows[20].start,
                            end=rows[20].end, value=D("0.5"), quality=Quality.ESTIMATED,
                            source=Source.ESTIMATION)  # fmt: skip
    if kind == "edited":
        rows.append(Interval(meter_id=meter, channel="1.8.0", start=start + 40 * Q,
                             end=start + 41 * Q, value=D("9.5"), quality=Quality.ESTIMATED,
                             version=2, source=Source.ESTIMATION))  # fmt: skip
    return rows


def _expected(store: Store, meter: int, start: datetime, end: datetime, *, original: bool,
              after: datetime | None, limit: int) -> tuple[list[Any], bool] | None:  # fmt: skip
    """What the fast path must give, from the general path's rows."""
    cid = store.channel_id("1.8.0")
    low = start if after is None else max(start, after)
    if not original:
        every, _ = api_queries.series(store.engine, meter, cid, low, end, version="all")
        if any(r.version > 1 for r in every):
            return None
    rows, more = api_queries.series(
        store.engine, meter, cid, start, end, version="original", limit=limit,
        after=None if after is None else (after, 1),
    )  # fmt: skip
    return [interval_out(r).model_dump(mode="json") for r in rows], more


def _fast(store: Store, meter: int, start: datetime, end: datetime, *, original: bool,
          after: datetime | None, limit: int) -> tuple[list[Any], bool] | None:  # fmt: skip
    found = plain_series.plain_series(store.engine, meter, store.channel_id("1.8.0"), start, end,
                                      original=original, after=after, limit=limit)  # fmt: skip
    if found is None:
        return None
    columns, more = found
    return json.loads(f"[{fastjson.plain_intervals(columns)}]"), more


def _held(engine: Engine, meter: int) -> list[int]:
    """The days (from JAN1) of ``meter`` with a day series."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT day_start FROM day_series WHERE meter_id = :m "
                                  "ORDER BY day_start"), {"m": meter}).scalars().all()  # fmt: skip
    days = []
    for at in found:
        seconds = at.timestamp() if isinstance(at, datetime) else at
        days.append(int((seconds - JAN1.timestamp()) // 86_400))
    return days


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@example(days=["run", "edited"], cut=(0, 192), after=None, limit=96, original=True)
@example(days=["estimated", "run"], cut=(0, 192), after=None, limit=300, original=False)
@example(days=["run", "all estimated"], cut=(0, 192), after=None, limit=300, original=False)
@example(days=["run", "late"], cut=(0, 192), after=None, limit=300, original=False)
@example(days=["edited", "run", "empty", "run", "edited", "run", "empty", "run", "edited"],
         cut=(0, 8 * 96 + 4), after=None, limit=1000, original=True)  # 5 stretches: read whole
@example(days=["early", "run"], cut=(0, 192), after=None, limit=300, original=True)
@given(days=st.lists(DAY_KINDS, min_size=1, max_size=8), cut=st.tuples(EDGES, EDGES),
       after=st.none() | EDGES, limit=st.one_of(st.integers(1, 300), st.sampled_from([94, 96])),
       original=st.booleans())  # fmt: skip
def test_a_series_read_from_day_series_is_the_stored_series(
    store: Store, days: list[DayKind], cut: tuple[int, int], after: int | None, limit: int,
    original: bool,
) -> None:  # fmt: skip
    """Random days (runs, gaps, estimates, edits, overlapping intervals of several lengths,
    empty days), random ranges on or off midnights, random cursors and page limits: the
    fast path gives what the general path's rows are, before and after the day series
    are built, and they are built for exactly the days with intervals and no edits."""
    meter = add_meter(store, f"{next(_METERS):012d}")
    store.ingest_intervals([r for d, kind in enumerate(days) for r in _day_rows(meter, d, kind)])
    low, high = sorted(cut)
    start, end = JAN1 + low * Q, JAN1 + max(high, low + 1) * Q
    args: dict[str, Any] = {"original": original, "limit": limit,
                            "after": None if after is None else JAN1 + after * Q}  # fmt: skip
    expected = _expected(store, meter, start, end, **args)
    assert _fast(store, meter, start, end, **args) == expected
    _build(store, meter)
    assert _held(store.engine, meter) == [d for d, kind in enumerate(days)
                                          if kind not in ("empty", "edited")]  # fmt: skip
    assert _fast(store, meter, start, end, **args) == expected


def _run_meter(api: Api, days: int = 3) -> int:
    meter = add_meter(api.store, f"{next(_METERS):012d}")
    api.store.ingest_intervals([r for d in range(days) for r in _day_rows(meter, d, "run")])
    return meter


def _values(api: Api, meter: int, start: datetime, end: datetime) -> dict[datetime, str | None]:
    response = api.get(f"/v1/meters/{meter}/intervals", "read",
                       params={"start": start.isoformat(), "end": end.isoformat()})  # fmt: skip
    assert response.status_code == 200, response.text
    return {datetime.fromisoformat(i["start"]): i["value"] for i in response.json()["items"]}


def _tamper(engine: Engine, meter: int, day: datetime) -> None:
    """Write 0.000001 kWh as every value of a held day (a row only a reader of the day
    series can see)."""
    at: Any = int(day.timestamp()) if engine.dialect.name == "sqlite" else day
    with engine.begin() as conn:
        done = conn.execute(text("UPDATE day_series SET vals = :v WHERE meter_id = :m "
                                 "AND day_start = :d"),
                            {"v": ",".join(["1"] * 96), "m": meter, "d": at})  # fmt: skip
    assert done.rowcount == 1


def test_whole_days_are_read_from_the_day_series_and_the_rest_from_the_intervals(
    engine: Engine,
) -> None:
    for api in make_api(engine):
        meter = _run_meter(api)
        _build(api.store, meter)
        _tamper(engine, meter, JAN1 + DAY)
        month = _values(api, meter, JAN1, JAN1 + 3 * DAY)
        held = [at for at, value in month.items() if value == "0.000001"]
        assert held == [JAN1 + DAY + i * Q for i in range(96)]
        # From noon on the first day to noon on the third: only the second day is whole.
        off = _values(api, meter, JAN1 + 48 * Q, JAN1 + 2 * DAY + 48 * Q)
        assert len(off) == 192
        assert [at for at, value in off.items() if value == "0.000001"] == held


def test_a_write_into_a_day_drops_its_series_which_is_built_again(engine: Engine) -> None:
    for api in make_api(engine):
        meter, other = _run_meter(api), _run_meter(api)
        _build(api.store)
        assert _held(engine, meter) == _held(engine, other) == [0, 1, 2]
        late = JAN1 + DAY + 50 * Q + timedelta(minutes=5)  # between two stored starts
        api.store.ingest_intervals([Interval(meter_id=meter, channel="1.8.0", start=late,
                                             end=late + Q, value=D("7.25"))])  # fmt: skip
        assert _held(engine, meter) == [0, 2]
        assert _held(engine, other) == [0, 1, 2]
        values = _values(api, meter, JAN1, JAN1 + 3 * DAY)
        assert values[late] == "7.250000" and len(values) == 3 * 96 + 1
        _build(api.store)
        assert _held(engine, meter) == [0, 1, 2]
        assert _values(api, meter, JAN1, JAN1 + 3 * DAY) == values


def test_an_edit_drops_the_day_series_and_the_day_is_not_built_again(engine: Engine) -> None:
    for api in make_api(engine):
        meter = _run_meter(api)
        _build(api.store, meter)
        at = JAN1 + 2 * DAY + 40 * Q
        edit = {"start": at.isoformat(), "value": "9.5", "reason": "meter test"}
        response = api.post(f"/v1/meters/{meter}/intervals/edits", "operate", json=edit)
        assert response.status_code == 201, response.text
        assert _held(engine, meter) == [0, 1]
        _build(api.store, meter)
        assert _held(engine, meter) == [0, 1]
        assert _values(api, meter, JAN1, JAN1 + 3 * DAY)[at] == "9.500000"


def test_day_series_built_for_another_offset_are_read_alongside(engine: Engine) -> None:
    """Rows built for Shanghai's midnights and then for UTC's overlap; a reader uses rows
    that do not overlap one another and reads the rest from the intervals."""
    for api in make_api(engine):
        meter = _run_meter(api, days=4)
        _build(api.store, meter)
        _build(api.store, meter, offset_s=0)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM day_series WHERE meter_id = :m"),
                                {"m": meter}).scalar()  # fmt: skip
        assert rows == 4 + 5  # the UTC days holding intervals: five (the first and last partly)
        for start, end in [(JAN1, JAN1 + 4 * DAY), (JAN1 + 32 * Q, JAN1 + 4 * DAY),
                           (datetime(2026, 1, 1, tzinfo=UTC), JAN1 + 4 * DAY)]:  # fmt: skip
            expected = _expected(api.store, meter, start, end, original=False, after=None,
                                 limit=1000)  # fmt: skip
            assert expected is not None and len(expected[0]) == (end - start) // Q
            assert _fast(api.store, meter, start, end, original=False, after=None,
                         limit=1000) == expected  # fmt: skip


def test_a_write_waits_for_a_build_in_progress_then_drops_what_it_stored(clean_pg: Engine) -> None:
    """PostgreSQL: a builder holds the advisory lock while it computes and stores a day; a
    write into that day waits for it in its trigger and then drops the row, which was
    computed without the write."""
    store = Store(clean_pg)
    meter = add_meter(store)
    store.ingest_intervals([r for d in range(2) for r in _day_rows(meter, d, "run")])
    late = JAN1 + DAY + 50 * Q + timedelta(minutes=5)
    wrote: list[BaseException | None] = []

    def write() -> None:
        try:
            store.ingest_intervals([Interval(meter_id=meter, channel="1.8.0", start=late,
                                             end=late + Q, value=D("7.25"))])  # fmt: skip
        except BaseException as exc:  # reported to the test below
            wrote.append(exc)
        else:
            wrote.append(None)

    todo = "todo AS (SELECT m.id AS mid, c.id AS cid FROM meters m, channels c WHERE m.id IN :ids)"
    with clean_pg.connect() as builder:
        with builder.begin():
            builder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BUILDER_LOCK})
            writer = threading.Thread(target=write)
            writer.start()
            _wait_for_a_lock_wait(clean_pg)
            assert writer.is_alive() and not wrote
            stored = day_series.build_day(builder, clean_pg, todo, {
                "d": JAN1 + DAY, "e": JAN1 + 2 * DAY, "ids": [meter]})  # fmt: skip
            assert stored == 1  # without the late interval: the write is not committed
        writer.join(30)
    assert wrote == [None]
    assert _held(clean_pg, meter) == []
    found = _fast(store, meter, JAN1, JAN1 + 2 * DAY, original=False, after=None, limit=1000)
    assert found is not None and len(found[0]) == 2 * 96 + 1


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Until a session of this database waits for a lock (the writer's trigger)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )).scalar()  # fmt: skip
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the write never waited for the builder's lock")


def test_where_local_days_change_length_day_series_are_kept_for_utc_days(engine: Engine) -> None:
    """Europe/Berlin over a daylight-saving change: no day totals, day series for each UTC
    day holding intervals, and a series over local days reads them and the hours at its
    ends from the intervals."""
    for api in make_api(engine):
        meter = _run_meter(api, days=4)
        berlin = TouSchedule().classifier(ZoneInfo("Europe/Berlin"))
        assert totals.build(api.store, berlin, interval_s=900, days=120,
                            now=JAN1 + 100 * DAY) == (0, 5)  # fmt: skip
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM day_totals")).scalar() == 0
            found = conn.execute(text("SELECT day_start FROM day_series WHERE meter_id = :m"),
                                 {"m": meter}).scalars().all()  # fmt: skip
        starts = sorted(int(at.timestamp() if isinstance(at, datetime) else at) for at in found)
        first = int(datetime(2025, 12, 31, tzinfo=UTC).timestamp())
        assert starts == [first + d * 86_400 for d in range(5)]  # the first and last partly
        local = ZoneInfo("Europe/Berlin")
        start, end = datetime(2026, 1, 1, tzinfo=local), datetime(2026, 1, 4, tzinfo=local)
        expected = _expected(api.store, meter, start, end, original=False, after=None,
                             limit=1000)  # fmt: skip
        assert expected is not None and len(expected[0]) == 3 * 96
        _tamper(engine, meter, datetime(2026, 1, 2, tzinfo=UTC))
        got = _fast(api.store, meter, start, end, original=False, after=None, limit=1000)
        assert got is not None
        held = [i["start"] for i in got[0] if i["value"] == "0.000001"]
        assert len(held) == 96 and held[0] == "2026-01-02T00:00:00Z"
        assert [i for i in got[0] if i["value"] != "0.000001"] == [
            i for i in expected[0] if not i["start"].startswith("2026-01-02")
        ]
