"""Billing determinants over HTTP, checked against values computed by hand."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from amigate.api.v1.determinants import Computed, as_json, as_model
from amigate.api.v1.schemas import energy, exact
from amigate.billing import totals
from amigate.billing.determinants import BoundaryRead, Determinant, TouTotal, compute
from amigate.domain import Anomaly, Interval, Quality, Severity
from amigate.tou import TouSchedule
from tests.api.conftest import (
    INTERVAL_SPECS,
    JAN1,
    Api,
    IntervalSpec,
    Q,
    add_meter,
    add_series,
    add_spec_series,
    make_api,
)

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
FEB1 = datetime(2026, 2, 1, tzinfo=SHANGHAI)
#: Peak by day, valley by night, holidays and weekends all valley.
SCHEDULE = TouSchedule(periods={"峰": ["08:00-22:00"], "谷": ["00:00-08:00", "22:00-24:00"]},
                       holidays=[date(2026, 1, 2)], holiday_period="谷",
                       weekends_as_holidays=True)  # fmt: skip


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=SHANGHAI)


def _january(api: Api) -> int:
    """A CT 10 meter: 0.5 kWh every 15 min of January (local), with three special intervals
    and one more interval just after the month (local time) that must not count."""
    meter = add_meter(api.store, ct_ratio=D(10))
    slots = int((FEB1 - JAN1) / Q)
    values: list[Decimal | None] = [D("0.5")] * slots + [D(9)]
    special = {_local(1, 7, 45): D(4), _local(1, 8): D(6), _local(31, 23, 45): D(2)}
    for at, value in special.items():
        values[int((at - JAN1) / Q)] = value
    add_series(api.store, meter, JAN1, values, first_register=D(5000), multiplier=D(10))
    return meter


def test_a_month_across_tou_boundaries_and_the_month_edge(api: Api) -> None:
    meter = _january(api)
    response = api.get(f"/v1/meters/{meter}/determinants", "billing",
                       params={"start": JAN1.isoformat(), "end": FEB1.isoformat()})  # fmt: skip
    assert response.status_code == 200, response.text
    d = response.json()
    # By hand: 31 days x 96 slots of 0.5 kWh = 1488 kWh; 07:45 (谷) +3.5, 08:00 (峰) +5.5,
    # 31 Jan 23:45 (谷) +1.5. Per day 尖 8 slots, 峰 20, 平 32, 谷 36.
    assert d["consumption"] == "1498.500000"
    assert {t["period"]: (t["energy"], t["intervals"]) for t in d["tou"]} == {
        "尖": ("124.000000", 248), "峰": ("315.500000", 620), "平": ("496.000000", 992),
        "谷": ("563.000000", 1116),
    }  # fmt: skip
    assert [t["period"] for t in d["tou"]] == ["尖", "峰", "平", "谷"]
    assert d["start_read"] == {"read_at": "2025-12-31T16:00:05Z", "value": "5000.000000"}
    assert d["end_read"] == {"read_at": "2026-01-31T16:00:05Z", "value": "5149.850000"}
    assert (d["multiplier"], d["register_delta"], d["difference"]) == (
        "10.000000",
        "1498.500000",
        "0.000000",
    )
    assert (d["max_demand"], d["max_demand_at"]) == ("24.000000", "2026-01-01T00:00:00Z")
    assert (d["intervals"], d["missing_intervals"], d["estimated_intervals"]) == (2976, 0, 0)
    assert (d["completeness"], d["billable"], d["reasons"], d["open_anomalies"]) == (
        1.0,
        True,
        [],
        [],
    )
    # The same month in UTC is another period: it includes the 9 kWh of 1 Feb 00:00 local.
    utc = api.get(
        f"/v1/meters/{meter}/determinants",
        "billing",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
    ).json()
    assert utc["consumption"] != d["consumption"]
    assert not utc["billable"] and "incomplete" in utc["reasons"]


def _day(api: Api, address: str = "000000000001") -> int:
    meter = add_meter(api.store, address)
    add_series(api.store, meter, JAN1, [D("0.25")] * 96)
    return meter


def test_edits_estimates_gaps_and_anomalies_make_it_not_billable(api: Api) -> None:
    meter = _day(api)
    period = {"start": JAN1.isoformat(), "end": (JAN1 + timedelta(days=1)).isoformat()}
    path = f"/v1/meters/{meter}/determinants"
    assert api.get(path, "billing", params=period).json()["billable"] is True
    edited = api.post(f"/v1/meters/{meter}/intervals/edits", "operate", json={
        "start": (JAN1 + 4 * Q).isoformat(), "value": "1.75", "reason": "meter test showed more",
        "reason_codes": ["ops"]})  # fmt: skip
    assert edited.status_code == 201, edited.text
    assert (edited.json()["version"], edited.json()["quality"], edited.json()["created_by"]) == (
        2,
        "substituted",
        "key:test-operate",
    )
    d = api.get(path, "billing", params=period).json()
    assert (d["consumption"], d["register_delta"], d["difference"]) == (
        "25.500000",
        "24.000000",
        "1.500000",
    )
    assert (d["estimated_intervals"], d["estimated_energy"]) == (1, "1.750000")
    assert d["reasons"] == ["register_mismatch"] and d["billable"] is False
    # An edit marking an interval missing: incomplete too.
    api.post(
        f"/v1/meters/{meter}/intervals/edits",
        "operate",
        json={"start": (JAN1 + 5 * Q).isoformat(), "value": None, "reason": "CT bypass suspected"},
    )
    d = api.get(path, "billing", params=period).json()
    assert d["missing_intervals"] == 1 and d["completeness"] == round(95 / 96, 6)
    assert d["reasons"] == ["register_mismatch", "incomplete"]
    # An open anomaly overlapping the period blocks billing until resolved.
    [anomaly] = api.store.add_anomalies([Anomaly(
        kind="stopped_register", start=JAN1 - timedelta(hours=1), end=JAN1 + Q,
        severity=Severity.WARNING, meter_id=meter)])  # fmt: skip
    api.store.add_anomalies([Anomaly(kind="old", start=JAN1 - timedelta(days=2),
                                     end=JAN1 - timedelta(days=1), severity=Severity.INFO,
                                     meter_id=meter)])  # fmt: skip
    d = api.get(path, "billing", params=period).json()
    assert d["open_anomalies"] == [anomaly] and "open_anomalies" in d["reasons"]
    resolved = api.post(f"/v1/anomalies/{anomaly}/resolve", "operate", json={"comment": "ok"})
    assert resolved.status_code == 200
    assert api.get(path, "billing", params=period).json()["open_anomalies"] == []


def test_missing_boundary_reads_are_reasons(api: Api) -> None:
    meter = _day(api)
    later = {"start": (JAN1 + Q).isoformat(), "end": (JAN1 + 2 * Q).isoformat()}
    d = api.get(f"/v1/meters/{meter}/determinants", "billing", params=later).json()
    assert d["billable"] is True and d["consumption"] == "0.250000"
    before = {"start": (JAN1 - timedelta(days=1)).isoformat(), "end": (JAN1 + Q).isoformat()}
    d = api.get(f"/v1/meters/{meter}/determinants", "billing", params=before).json()
    assert d["start_read"] is None and d["reasons"][:1] == ["no_start_read"]
    after = {"start": JAN1.isoformat(), "end": (JAN1 + timedelta(days=2)).isoformat()}
    d = api.get(f"/v1/meters/{meter}/determinants", "billing", params=after).json()
    assert "end_read_not_at_boundary" in d["reasons"]  # the last read is a day earlier
    assert d["end_read"]["read_at"] == "2026-01-01T16:00:05Z"


def test_a_batch_keeps_its_order_and_lists_unknown_meters(api: Api) -> None:
    one, two = _day(api), _day(api, "000000000002")
    body = {"meter_ids": [two, 999, one], "start": JAN1.isoformat(),
            "end": (JAN1 + timedelta(days=1)).isoformat()}  # fmt: skip
    items = api.post("/v1/determinants", "billing", json=body).json()["items"]
    assert [i["meter_id"] for i in items] == [two, 999, one]
    assert items[1]["reasons"] == ["unknown_meter"] and items[1]["billable"] is False
    assert items[0]["consumption"] == items[2]["consumption"] == "24.000000"
    single = api.get(f"/v1/meters/{one}/determinants", "billing",
                     params={"start": body["start"], "end": body["end"]}).json()  # fmt: skip
    assert items[2] == single
    exported = api.post("/v1/determinants.csv", "billing", json=body)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["meter_id"] for r in rows] == [str(two), "999", str(one)]
    assert rows[0]["consumption"] == "24.000000" and rows[0]["billable"] == "True"
    assert D(rows[0]["tou_谷"]) + D(rows[0]["tou_峰"]) + D(rows[0]["tou_平"]) + D(
        rows[0]["tou_尖"]
    ) == D(24)
    too_many = api.post("/v1/determinants", "billing", json=body | {"meter_ids": [1] * 1001})
    assert too_many.status_code == 422
    assert (
        api.get(
            "/v1/meters/999/determinants",
            "billing",
            params={"start": body["start"], "end": body["end"]},
        ).status_code
        == 404
    )


def test_the_database_sums_equal_the_interval_by_interval_computation(engine: Engine) -> None:
    """A batch is added up in SQL (meters without versions) or from the series (with
    versions); both must give what ``compute`` gives over the stored intervals, holidays,
    weekends, gaps, estimates and tied peaks included."""
    schedule = SCHEDULE
    for api in make_api(engine, tou=schedule):
        ids = []
        for n in range(4):
            ct = D((1, 2, 4, 5)[n])
            meter = add_meter(api.store, f"00000000010{n}", ct_ratio=ct)
            values: list[Decimal | None] = [
                None if (i * 7 + n) % 53 == 0 else D((i * 13 + n * 5) % 97 + 1) / 100
                for i in range(96 * 5)]  # fmt: skip
            values[10] = values[96 + 10] = D(5)  # the same peak on two days: the first counts
            add_series(api.store, meter, JAN1, values, multiplier=ct)
            ids.append(meter)
        api.store.ingest_intervals(
            [
                Interval(
                    meter_id=ids[1],
                    channel="1.8.0",
                    start=JAN1 + 6 * Q,
                    end=JAN1 + 7 * Q,
                    value=D("0.42"),
                    quality=Quality.ESTIMATED,
                    version=2,
                    created_by="vee",
                )
            ]
        )
        start, end = JAN1 + 5 * Q, JAN1 + timedelta(days=4)
        body = {"meter_ids": ids, "start": start.isoformat(), "end": end.isoformat()}
        items = api.post("/v1/determinants", "billing", json=body).json()["items"]
        for meter, item in zip(ids, items, strict=True):
            _assert_computed(api, item, meter, start, end, schedule)
        assert items[1]["estimated_intervals"] == 1
        assert items[0]["max_demand_at"] == "2025-12-31T18:30:00Z"


def _assert_computed(api: Api, item: dict[str, Any], meter: int, start: datetime,
                     end: datetime, schedule: TouSchedule) -> None:  # fmt: skip
    """``item`` (a determinant document) holds what ``compute`` gives over the stored
    intervals of ``meter`` (reads, multiplier and anomalies aside)."""
    rows = [(iv.start, int(iv.duration.total_seconds()),
             None if iv.value is None else int(iv.value * 1_000_000), int(iv.quality))
            for iv in api.store.intervals(meter, "1.8.0", start, end)]  # fmt: skip
    expected = compute(meter_id=meter, start=start, end=end, rows=rows, start_read=None,
                       end_read=None, multiplier=D(1), classifier=schedule.classifier(SHANGHAI),
                       interval_s=900)  # fmt: skip
    assert item["consumption"] == energy(expected.consumption)
    assert {t["period"]: (t["energy"], t["intervals"]) for t in item["tou"]} == {
        name: (energy(t.energy), t.intervals) for name, t in expected.tou.items()
    }
    if expected.max_demand is None:
        assert item["max_demand"] is None and item["max_demand_at"] is None
    else:
        assert item["max_demand"] == exact(expected.max_demand.scaleb(-6))
        assert datetime.fromisoformat(item["max_demand_at"]) == expected.max_demand_at
    assert (item["intervals"], item["missing_intervals"], item["estimated_intervals"],
            item["estimated_energy"], item["completeness"]) == (
        expected.intervals, expected.missing_intervals, expected.estimated_intervals,
        energy(expected.estimated_energy), round(expected.completeness, 6),
    )  # fmt: skip


def test_a_period_across_a_dst_change_is_computed_interval_by_interval(engine: Engine) -> None:
    """Europe/Berlin springs forward on 2026-03-29: local time-of-use periods then shift by an
    hour in UTC, which only the interval-by-interval computation follows."""
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, tzinfo=berlin)
    end = datetime(2026, 3, 30, tzinfo=berlin)
    for api in make_api(engine, site_timezone="Europe/Berlin"):
        meter = add_meter(api.store, timezone="Europe/Berlin")
        slots = int((end.timestamp() - start.timestamp()) // Q.total_seconds())
        first = start.astimezone(ZoneInfo("UTC"))  # UTC arithmetic: 15 real minutes a slot
        add_series(api.store, meter, first, [D(i % 7 + 1) / 4 for i in range(slots)])
        d = api.get(f"/v1/meters/{meter}/determinants", "billing",
                    params={"start": start.isoformat(), "end": end.isoformat()}).json()  # fmt: skip
        rows = [(iv.start, 900, int(iv.value * 1_000_000), 0)  # type: ignore[operator]
                for iv in api.store.intervals(meter, "1.8.0", start, end)]  # fmt: skip
        expected = compute(
            meter_id=meter,
            start=start,
            end=end,
            rows=rows,
            start_read=None,
            end_read=None,
            multiplier=D(1),
            classifier=TouSchedule().classifier(berlin),
            interval_s=900,
        )
        assert {t["period"]: t["energy"] for t in d["tou"]} == {
            name: energy(t.energy) for name, t in expected.tou.items()
        }
        assert d["intervals"] == slots == 188  # 47 hours
        assert d["billable"] is True and d["consumption"] == energy(expected.consumption)


def test_determinant_documents_are_the_models_json() -> None:
    """Determinants are written as text, not through the model; the text is the model's."""
    periods = {"尖": ["00:00-12:00"], 'a "quoted\\" one': ["12:00-24:00"]}
    classifier = TouSchedule(periods=periods).classifier(SHANGHAI)
    start, end = datetime(2026, 1, 1, tzinfo=SHANGHAI), datetime(2026, 2, 1, tzinfo=UTC)
    utc_start = start.astimezone(UTC)  # the same instant as start, written differently
    full = Determinant(
        meter_id=7, start=start, end=end, start_read=BoundaryRead(utc_start, 5_000_000_000),
        end_read=BoundaryRead(end, -1), consumption=-250_000,
        register_delta=D("1234567.5"), difference=D("-1234567"),
        tou={"尖": TouTotal(123_456_000_001, 3), 'a "quoted\\" one': TouTotal(0, 0)},
        max_demand=D("24000000.25"), max_demand_at=utc_start, estimated_intervals=2,
        estimated_energy=1, missing_intervals=4, intervals=2976, completeness=5e-06,
        anomaly_ids=[3, 9], reasons=["register_mismatch", "open_anomalies"],
    )  # fmt: skip
    bare = Determinant(
        meter_id=8, start=utc_start, end=end, start_read=None, end_read=None, consumption=0,
        register_delta=None, difference=None, tou={}, max_demand=None, max_demand_at=None,
        estimated_intervals=0, estimated_energy=0, missing_intervals=0, intervals=0,
        completeness=1 / 3,
    )  # fmt: skip
    computed = [Computed(7, full, "10.000000"), Computed(8, bare, None), Computed(9, None, None)]
    for c in computed * 2:  # the second time from the memoised pieces
        model = as_model(c, "1.8.0", start, end, classifier)
        assert as_json(c, "1.8.0", start, end, classifier) == model.model_dump_json()
    assert '"start":"2026-01-01T00:00:00+08:00"' in as_json(computed[0], "1.8.0", start, end,
                                                             classifier)  # fmt: skip


@pytest.fixture
def tou_api(engine: Engine) -> Iterator[Api]:
    """The API billing by :data:`SCHEDULE`, at a rate the examples below stay under."""
    yield from make_api(engine, tou=SCHEDULE, api_rate_limit=10_000.0, api_rate_burst=10_000)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(series=st.lists(st.tuples(st.integers(0, 2 * 96), st.lists(INTERVAL_SPECS, max_size=30),
                                 st.lists(st.integers(0, 3 * 96), max_size=3)),
                       min_size=1, max_size=3),
       cut=st.tuples(st.integers(0, 3 * 96 - 1), st.integers(1, 3 * 96)))  # fmt: skip
def test_random_series_add_up_as_computed(
    tou_api: Api, series: list[tuple[int, list[IntervalSpec], list[int]]], cut: tuple[int, int]
) -> None:
    """Stretches of any shape (gaps, overlaps, 5 to 30-minute intervals, missing and
    estimated ones, across local midnights) amid three days of 15-minute intervals, some
    replaced by later versions, in a batch, over the three whole local days and over a
    period cut anywhere, from the intervals and again from built day totals: every sum is
    what ``compute`` gives over the latest versions of the stored intervals."""
    api = tou_api
    days = JAN1 + timedelta(days=3)
    ids = []
    for offset, spec, replaced in series:
        meter = add_spec_series(api.store, spec, JAN1 + offset * Q, padded_to=days)
        stored = api.store.intervals(meter, "1.8.0", JAN1, days, version="original")
        api.store.ingest_intervals([Interval(
            meter_id=meter, channel="1.8.0", start=stored[i].start, end=stored[i].end,
            value=D(i) / 100, quality=Quality.ESTIMATED, version=2, created_by="vee",
        ) for i in sorted(set(replaced)) if i < len(stored)])  # fmt: skip
        ids.append(meter)
    low, high = sorted(cut)
    periods = [(JAN1, days), (JAN1 + low * Q, JAN1 + max(high, low + 1) * Q)]
    for built in (False, True):
        if built:
            totals.build(api.store, SCHEDULE.classifier(SHANGHAI), interval_s=900, days=30,
                         now=JAN1 + timedelta(days=10))  # fmt: skip
        for start, end in periods:
            body = {"meter_ids": ids, "start": start.isoformat(), "end": end.isoformat()}
            response = api.post("/v1/determinants", "billing", json=body)
            assert response.status_code == 200, response.text
            for meter, item in zip(ids, response.json()["items"], strict=True):
                _assert_computed(api, item, meter, start, end, SCHEDULE)
