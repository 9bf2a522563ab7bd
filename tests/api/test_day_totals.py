"""Day totals: determinants read from them equal those summed from the intervals, and any
write into a day drops its totals before billing can see them stale."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from amigate.billing import totals
from amigate.domain import Interval, Quality
from amigate.storage import day_totals
from amigate.tou import TouSchedule
from tests.api.conftest import JAN1, Api, Q, add_meter, make_api

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)
DAYS = 5
SCHEDULE = TouSchedule(periods={"峰": ["08:00-22:00"], "谷": ["00:00-08:00", "22:00-24:00"]},
                       holidays=[date(2026, 1, 2)], holiday_period="谷",
                       weekends_as_holidays=True)  # fmt: skip
#: Late enough for every stored day to be closed.
LATER = JAN1 + timedelta(days=10)


def _store(api: Api, meter: int, n: int, *, absent: frozenset[int] = frozenset(),
           span: bool = False) -> None:  # fmt: skip
    """Five days of varied intervals: some missing, some estimated, tied peaks, and (with
    ``span``) one hour from 23:30 on the first day into the second as a single interval."""
    rows = []
    for i in range(96 * DAYS):
        if i in absent or (span and 94 <= i < 98):
            continue
        value: Decimal | None = (None if (i * 7 + n) % 53 == 0
                                 else D((i * 13 + n * 5) % 97 + 1) / 100)  # fmt: skip
        if i in (10, 96 + 10):
            value = D(5)  # the same peak on two days: the first counts
        quality = Quality.MISSING if value is None else (
            Quality.ESTIMATED if i % 41 == 0 else Quality.ACTUAL)  # fmt: skip
        at = JAN1 + i * Q
        rows.append(Interval(meter_id=meter, channel="1.8.0", start=at, end=at + Q, value=value,
                             quality=quality))  # fmt: skip
    if span:
        at = JAN1 + 94 * Q
        rows.append(Interval(meter_id=meter, channel="1.8.0", start=at, end=at + 4 * Q,
                             value=D("1.5"), quality=Quality.ACTUAL))  # fmt: skip
    api.store.ingest_intervals(rows)


def _determinants(api: Api, ids: list[int], start: datetime, end: datetime) -> list[Any]:
    body = {"meter_ids": ids, "start": start.isoformat(), "end": end.isoformat()}
    response = api.post("/v1/determinants", "billing", json=body)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


def _build(api: Api, now: datetime = LATER, schedule: TouSchedule = SCHEDULE) -> int:
    """Build; the number of day-total rows stored."""
    return totals.build(api.store, schedule.classifier(SHANGHAI), interval_s=900,
                        days=30, now=now).totals  # fmt: skip


def _covered(api: Api, ids: list[int], start: datetime, end: datetime) -> set[int]:
    """The meters whose determinant is read from day totals, holidays and weekends billed
    as the API bills them."""
    classifier = SCHEDULE.classifier(SHANGHAI)
    cid = api.store.channel_id("1.8.0")
    holiday, days, weekends = classifier.special_days(start, end)
    covered, _groups = day_totals.read_groups(
        api.store.engine, ids, cid, start, end, ranges=totals.period_ranges(classifier),
        offset_s=8 * 3600, interval_s=900, holidays=[(d - date(1970, 1, 1)).days for d in days],
        weekends=weekends,
        holiday_period=None if holiday is None else list(classifier.names).index(holiday),
    )  # fmt: skip
    return covered


def _rows(engine: Engine, meter: int, day: datetime) -> int:
    at: Any = int(day.timestamp()) if engine.dialect.name == "sqlite" else day
    with engine.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM day_totals WHERE meter_id = :m AND "
                                  "day_start = :d"), {"m": meter, "d": at}).scalar()  # fmt: skip
    return int(found or 0)


def test_determinants_from_day_totals_equal_those_from_the_intervals(engine: Engine) -> None:
    """Gaps, v1 estimates, tied peaks, holidays, weekends and a span past midnight (whose
    overhang a period ending at that midnight does not cover): every field is the same."""
    for api in make_api(engine, tou=SCHEDULE):
        ids = [add_meter(api.store, f"00000000020{n}", ct_ratio=D(n + 1)) for n in range(3)]
        for n, meter in enumerate(ids):
            _store(api, meter, n, span=n == 2)
        periods = [(JAN1, JAN1 + DAYS * DAY), (JAN1, JAN1 + DAY), (JAN1 + DAY, JAN1 + 4 * DAY)]
        before = [_determinants(api, ids, start, end) for start, end in periods]
        assert _build(api) == len(ids) * DAYS * 2  # two periods a day
        for (start, end), expected in zip(periods, before, strict=True):
            assert _covered(api, ids, start, end) == set(ids)
            assert _determinants(api, ids, start, end) == expected
        assert _build(api) == 0  # nothing left to build


def test_a_peak_too_large_to_pack_with_its_time_is_summed_from_the_intervals(
    engine: Engine,
) -> None:
    """PostgreSQL reads a peak and its time as one bigint; a peak that does not fit beside
    the time (20 million kWh in 15 minutes, over 5 days) takes the intervals' path, with
    the same determinant. SQLite reads the time beside the peak."""
    for api in make_api(engine, tou=SCHEDULE):
        ordinary, huge = (add_meter(api.store, f"00000000030{n}") for n in range(2))
        _store(api, ordinary, 0)
        _store(api, huge, 1, absent=frozenset({30}))
        at = JAN1 + 30 * Q
        api.store.ingest_intervals([Interval(
            meter_id=huge, channel="1.8.0", start=at, end=at + Q, value=D(20_000_000),
            quality=Quality.ACTUAL,
        )])  # fmt: skip
        ids, end = [ordinary, huge], JAN1 + DAYS * DAY
        before = _determinants(api, ids, JAN1, end)
        assert _build(api) == len(ids) * DAYS * 2
        expected = {ordinary, huge} if engine.dialect.name == "sqlite" else {ordinary}
        assert _covered(api, ids, JAN1, end) == expected
        after = _determinants(api, ids, JAN1, end)
        assert after == before
        assert D(after[1]["max_demand"]) == 80_000_000  # kW: 20 million kWh in 15 minutes
        assert datetime.fromisoformat(after[1]["max_demand_at"]) == at


def test_a_period_not_on_local_midnights_is_summed_from_the_intervals(engine: Engine) -> None:
    for api in make_api(engine, tou=SCHEDULE):
        meter = add_meter(api.store)
        _store(api, meter, 0)
        start, end = JAN1 + 5 * Q, JAN1 + 3 * DAY
        expected = _determinants(api, [meter], start, end)
        _build(api)
        assert _covered(api, [meter], start, end) == set()
        assert _determinants(api, [meter], start, end) == expected


def test_a_late_interval_drops_the_totals_of_its_day_only(engine: Engine) -> None:
    for api in make_api(engine, tou=SCHEDULE):
        first, second = add_meter(api.store, "000000000001"), add_meter(api.store, "000000000002")
        late = 96 + 50  # day 2, 12:30 local
        _store(api, first, 0, absent=frozenset({late}))
        _store(api, second, 1)
        _build(api)
        end = JAN1 + DAYS * DAY
        without = _determinants(api, [first], JAN1, end)[0]
        assert _rows(engine, first, JAN1 + DAY) == 2
        at = JAN1 + late * Q
        api.store.ingest_intervals([Interval(meter_id=first, channel="1.8.0", start=at,
                                             end=at + Q, value=D("7.25"))])  # fmt: skip
        assert _rows(engine, first, JAN1 + DAY) == 0
        assert [_rows(engine, first, JAN1 + d * DAY) for d in (0, 2, 3, 4)] == [2, 2, 2, 2]
        assert _rows(engine, second, JAN1 + DAY) == 2
        with_late = _determinants(api, [first], JAN1, end)[0]
        assert D(with_late["consumption"]) == D(without["consumption"]) + D("7.25")
        assert with_late["intervals"] == without["intervals"] + 1
        _build(api)  # the day is rebuilt with the late interval, and gives the same answer
        assert _rows(engine, first, JAN1 + DAY) == 2
        assert _determinants(api, [first], JAN1, end)[0] == with_late


def test_an_edit_drops_the_totals_of_its_day_and_the_day_is_not_rebuilt(engine: Engine) -> None:
    """Days with later versions are summed from the series (latest versions)."""
    for api in make_api(engine, tou=SCHEDULE):
        meter = add_meter(api.store)
        _store(api, meter, 0)
        _build(api)
        at = JAN1 + 2 * DAY + 40 * Q
        edit = {"start": at.isoformat(), "value": "9.5", "reason": "meter test"}
        response = api.post(f"/v1/meters/{meter}/intervals/edits", "operate", json=edit)
        assert response.status_code == 201, response.text
        assert _rows(engine, meter, JAN1 + 2 * DAY) == 0
        assert _build(api) == 0
        assert _rows(engine, meter, JAN1 + 2 * DAY) == 0
        end = JAN1 + DAYS * DAY
        assert _covered(api, [meter], JAN1, end) == set()
        got = _determinants(api, [meter], JAN1, end)[0]
        series = api.get(f"/v1/meters/{meter}/intervals",
                         params={"start": JAN1.isoformat(), "end": end.isoformat()}).json()
        latest = sum(D(i["value"]) for i in series["items"]
                     if i["value"] is not None and i["quality"] != "missing")  # fmt: skip
        assert D(got["consumption"]) == latest


def test_only_closed_days_of_the_current_schedule_are_built(engine: Engine) -> None:
    for api in make_api(engine, tou=SCHEDULE):
        meter = add_meter(api.store)
        _store(api, meter, 0)
        # 00:30 local on day 3: day 2 ended half an hour ago, within the settling hour.
        assert _build(api, now=JAN1 + 2 * DAY + 2 * Q) == 2
        assert _rows(engine, meter, JAN1) == 2 and _rows(engine, meter, JAN1 + DAY) == 0
        other = TouSchedule(periods={"全": ["00:00-24:00"]})
        assert _build(api, schedule=other) == DAYS  # the old rows replaced, one period a day
        with engine.connect() as conn:
            keys = conn.execute(text("SELECT DISTINCT schedule FROM day_totals")).all()
        assert len(keys) == 1
        berlin = TouSchedule().classifier(ZoneInfo("Europe/Berlin"))
        assert totals.build(api.store, berlin, interval_s=900, days=30,
                            now=datetime(2026, 4, 5, tzinfo=UTC)).totals == 0  # fmt: skip
