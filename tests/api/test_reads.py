"""Meters, interval series (versions, pages, aggregates, CSV) and register reads over HTTP."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from amigate.api.v1.intervals import interval_out
from amigate.domain import Interval, MeterStatus, Quality, RegisterRead, Source
from amigate.normalize import floor_boundary
from amigate.storage import api_queries, plain_series
from amigate.storage.plain_series import PlainColumns, _unpacked, in_start_order, series_columns
from tests.api.conftest import JAN1, Api, Q, add_meter, add_run_cases, add_series

D = Decimal
VALUES: list[Decimal | None] = [D("1.25"), D("2.5"), None, D("0.75"), D("1"), D("3.125")]


def _seed(api: Api) -> int:
    meter = add_meter(api.store, transformer_area="A1")
    add_series(api.store, meter, JAN1, VALUES)
    api.store.ingest_intervals([Interval(
        meter_id=meter, channel="1.8.0", start=JAN1 + 2 * Q, end=JAN1 + 3 * Q, value=D("2"),
        quality=Quality.ESTIMATED, version=2, source=Source.ESTIMATION, method=3,
        reason_codes=("gap",), created_by="vee",
    )])  # fmt: skip
    return meter


def _all_pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        page = api.get(path, "read", params=query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_meter_list_filters_and_pages(api: Api) -> None:
    ids = [add_meter(api.store, f"00000000000{i}", bus=f"b{i % 2}",
                     transformer_area="A1" if i < 4 else "A2") for i in range(1, 7)]  # fmt: skip
    api.store.retire_meter(ids[0])
    everything = _all_pages(api, "/v1/meters", limit=4)
    assert [m["id"] for m in everything] == ids
    first = everything[0]
    assert first["multiplier"] == "1.000000" and first["status"] == "retired"
    assert [m["id"] for m in _all_pages(api, "/v1/meters", area="A1", limit=1)] == ids[:3]
    assert [m["id"] for m in _all_pages(api, "/v1/meters", bus="b0")] == ids[1::2]
    assert [m["id"] for m in _all_pages(api, "/v1/meters", status="retired")] == ids[:1]
    assert _all_pages(api, "/v1/meters", model="nothing") == []
    assert str(MeterStatus.ACTIVE) == "active"
    bad = api.get("/v1/meters", "read", params={"status": "gone"})
    assert bad.status_code == 422


def test_meter_detail_has_collection_health(api: Api) -> None:
    meter = add_meter(api.store, ct_ratio=D("40"), pt_ratio=D("1.5"))
    now = floor_boundary(datetime.now(UTC), Q)
    add_series(api.store, meter, now - 4 * Q, [D("1"), D("1"), None, D("1")])
    body = api.get(f"/v1/meters/{meter}", "read").json()
    assert body["multiplier"] == "60.000000" and body["ct_ratio"] == "40.000000"
    health = body["health"]
    assert health["expected_intervals"] == 96 and health["actual_intervals"] == 3
    assert abs(health["success_rate"] - 3 / 96) < 1e-9
    assert datetime.fromisoformat(health["last_read_at"]) == now + timedelta(seconds=5)
    assert api.get("/v1/meters/999", "read").status_code == 404


def test_interval_series_in_each_version_view(api: Api) -> None:
    meter = _seed(api)
    path = f"/v1/meters/{meter}/intervals"
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 6 * Q).isoformat()}
    latest = api.get(path, "read", params=rng).json()["items"]
    assert [i["value"] for i in latest] == ["1.250000", "2.500000", "2.000000", "0.750000",
                                            "1.000000", "3.125000"]  # fmt: skip
    estimate = latest[2]
    assert estimate | {"start": None, "end": None, "recorded_at": None} == {
        "start": None, "end": None, "value": "2.000000", "quality": "estimated", "version": 2,
        "source": "estimation", "method": 3, "reason_codes": ["gap"], "created_by": "vee",
        "comment": None, "recorded_at": None,
    }  # fmt: skip
    assert datetime.fromisoformat(estimate["start"]) == JAN1 + 2 * Q
    assert datetime.fromisoformat(estimate["end"]) == JAN1 + 3 * Q
    original = api.get(path, "read", params=rng | {"version": "original"}).json()["items"]
    assert original[2]["value"] is None and original[2]["quality"] == "missing"
    assert original[2]["created_by"] is None and original[2]["version"] == 1
    every = api.get(path, "read", params=rng | {"version": "all"}).json()["items"]
    assert [(i["start"], i["version"]) for i in every][2:4] == [
        (original[2]["start"], 1),
        (original[2]["start"], 2),
    ]
    assert len(every) == 7
    # Pages of two, across the two versions of one interval: nothing lost or repeated.
    paged = _all_pages(api, path, **rng, version="all", limit=2)
    assert paged == every
    assert _all_pages(api, path, **rng, limit=1) == latest
    other = api.get(path, "read", params=rng | {"channel": "2.8.0"}).json()
    assert other == {"items": [], "next_cursor": None}


def test_a_series_without_versions_pages_like_one_with_them(api: Api) -> None:
    """Version-1-only series take a faster path; its documents and cursors are the same."""
    meter = add_meter(api.store)
    add_series(api.store, meter, JAN1, [D("1.25"), None, D("0.5"), D("2"), D("0.000001")])
    path = f"/v1/meters/{meter}/intervals"
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 5 * Q).isoformat()}
    whole = api.get(path, "read", params=rng).json()
    assert whole["next_cursor"] is None
    assert [(i["value"], i["quality"]) for i in whole["items"]] == [
        ("1.250000", "actual"), (None, "missing"), ("0.500000", "actual"), ("2.000000", "actual"),
        ("0.000001", "actual"),
    ]  # fmt: skip
    assert whole["items"] == api.get(path, "read", params=rng | {"version": "all"}).json()["items"]
    for view in ("latest", "original"):
        assert _all_pages(api, path, **rng, version=view, limit=2) == whole["items"]
    first = api.get(path, "read", params=rng | {"limit": 2}).json()
    rest = api.get(path, "read", params=rng | {"cursor": first["next_cursor"]}).json()
    assert first["items"] + rest["items"] == whole["items"]


def test_the_fast_series_writes_what_the_model_writes(api: Api) -> None:
    """Version-1 series are put together from the database's text columns; each document
    equals the pydantic model's, whatever the value, quality, source or duration."""
    meter = add_meter(api.store)
    odd = [(Q, D("-0.25"), Quality.ACTUAL, Source.POLL),
           (2 * Q, D("123456.000001"), Quality.ESTIMATED, Source.LOAD_PROFILE),
           (Q, None, Quality.MISSING, Source.BACKFILL),
           (Q, D("0"), Quality.SUBSTITUTED, Source.IMPORT),
           (Q, D("-7"), Quality.VARIABLE, Source.DAILY_FREEZE)]  # fmt: skip
    at, intervals = JAN1, []
    for width, value, quality, source in odd:
        intervals.append(Interval(meter_id=meter, channel="1.8.0", start=at, end=at + width,
                                  value=value, quality=quality, source=source))  # fmt: skip
        at += width
    api.store.ingest_intervals(intervals)
    rng = {"start": JAN1.isoformat(), "end": at.isoformat()}
    engine = api.app.state.engine
    cid = api.store.channel_id("1.8.0")
    rows, _ = api_queries.series(engine, meter, cid, JAN1, at, version="original")
    assert [r.value for r in rows][:2] == [-250_000, 123_456_000_001]
    expected = [interval_out(r).model_dump(mode="json") for r in rows]
    assert api.get(f"/v1/meters/{meter}/intervals", "read", params=rng).json()["items"] == expected
    assert _all_pages(api, f"/v1/meters/{meter}/intervals", **rng, limit=2) == expected


def test_regular_and_broken_runs_write_what_the_model_writes(api: Api) -> None:
    """A series read every interval (one start every 15 minutes, one quality and source)
    takes shared heads and one tail; one broken by a different quality, or by a gap, is
    written piece by piece, and so are series off the 15-minute grid or of 5-minute
    intervals, or of intervals that overlap yet span the time of a run. Each document
    equals the model's, whole and from any page."""
    cases = add_run_cases(api.store)
    engine, cid = api.app.state.engine, api.store.channel_id("1.8.0")
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 9 * Q).isoformat()}
    for meter, count in cases.values():
        rows, _ = api_queries.series(engine, meter, cid, JAN1, JAN1 + 9 * Q, version="original")
        expected = [interval_out(r).model_dump(mode="json") for r in rows]
        assert len(expected) == count
        path = f"/v1/meters/{meter}/intervals"
        assert api.get(path, "read", params=rng).json()["items"] == expected
        for limit in (3, 5):  # pages start mid-run: other runs, other heads
            assert _all_pages(api, path, **rng, limit=limit) == expected
    assert api.get(f"/v1/meters/{cases['odd quality'][0]}/intervals", "read",
                   params=rng).json()["items"][-1]["quality"] == "estimated"  # fmt: skip


def test_series_columns_are_put_in_start_order() -> None:
    columns = PlainColumns(["1800", "900", "2700"], ["900", "900", "1800"], ["2", "1", "n"],
                           ["0", "0", "4"], ["0", "1", "2"])  # fmt: skip
    assert in_start_order(columns) == PlainColumns(
        ["900", "1800", "2700"], ["900", "900", "1800"], ["1", "2", "n"], ["0", "0", "4"],
        ["1", "0", "2"],
    )  # fmt: skip
    ordered = in_start_order(columns)
    assert in_start_order(ordered) is ordered
    same_length = PlainColumns(["2700", "1800", "3600"], ["900"] * 3, ["1", "2", "3"],
                               ["0"] * 3, ["0"] * 3)  # fmt: skip
    assert in_start_order(same_length).start == ["1800", "2700", "3600"]
    assert in_start_order(same_length).value == ["2", "1", "3"]
    longer = PlainColumns(["900", "10000"], ["900"] * 2, ["1", "2"], ["0"] * 2, ["0"] * 2)
    assert in_start_order(longer) is longer  # "10000" < "900" as text, not as a time


def test_a_series_read_every_interval_is_recognised_from_its_texts() -> None:
    """The database's concatenated columns of a regular run give the same columns as
    splitting and ordering them; anything else (a gap, starts out of order, another
    quality, a shorter interval) takes the general path, with the same result."""
    packed_900 = str(900)  # actual, polled, 900 s
    odd = str((1 * 256 + 0) * 4294967296 + 900)  # estimated

    def texts(starts: list[int], packed: list[str]) -> tuple[int, str, str, str]:
        values = [str(i * 10) for i in range(len(starts))]
        return len(starts), ",".join(map(str, starts)), ",".join(values), ",".join(packed)

    regular = [9000 + 900 * i for i in range(96)]
    cases = {
        "regular": texts(regular, [packed_900] * 96),
        "gap": texts([*regular[:50], *regular[51:]], [packed_900] * 95),
        "out of order": texts([regular[1], regular[0], *regular[2:]], [packed_900] * 96),
        "estimated": texts(regular, [packed_900] * 95 + [odd]),
        "overlapping": texts([*regular[:95], regular[94] + 300], [packed_900] * 96),
        "one": texts([9000], [packed_900]),
    }
    for name, (count, starts, values, packed) in cases.items():
        expected = in_start_order(_unpacked(starts, values, packed))
        assert expected.start == sorted(expected.start, key=int), name
        assert series_columns(count, starts, values, packed) == expected, name
    plain_series._RUNS.clear()
    series_columns(*cases["gap"])
    assert not plain_series._RUNS  # only what may be a run is built and kept
    count, starts, values, packed = cases["regular"]
    first = series_columns(count, starts, values, packed)
    first.start.clear()  # each answer owns its lists: the run's starts are shared
    assert series_columns(count, starts, values, packed).start[:2] == ["9000", "9900"]


def test_aggregates_by_hour_day_and_month(api: Api) -> None:
    meter = _seed(api)
    path = f"/v1/meters/{meter}/intervals/aggregate"
    hours = api.get(path, "read", params={
        "start": JAN1.isoformat(), "end": (JAN1 + timedelta(hours=2)).isoformat(),
        "bucket": "hour"}).json()["items"]  # fmt: skip
    assert [
        (h["value"], h["intervals"], h["missing"], h["estimated"], h["completeness"]) for h in hours
    ] == [("6.500000", 4, 0, 1, 1.0), ("4.125000", 2, 0, 0, 0.5)]
    original = api.get(path, "read", params={
        "start": JAN1.isoformat(), "end": (JAN1 + timedelta(hours=1)).isoformat(),
        "bucket": "hour", "version": "original"}).json()["items"]  # fmt: skip
    assert [(h["value"], h["missing"], h["completeness"]) for h in original] == [
        ("4.500000", 1, 0.75)
    ]
    days = api.get(path, "read", params={
        "start": (JAN1 - timedelta(days=1)).isoformat(),
        "end": (JAN1 + timedelta(days=1)).isoformat()}).json()["items"]  # fmt: skip
    assert [(datetime.fromisoformat(d["start"]), d["value"], d["intervals"]) for d in days] == [
        (JAN1 - timedelta(days=1), "0.000000", 0),
        (JAN1, "10.625000", 6),
    ]
    assert days[1]["completeness"] == round(6 / 96, 6)
    # A month bucket in local time: January starts on 2025-12-31 16:00 UTC in Shanghai.
    months = api.get(
        path,
        "read",
        params={
            "start": (JAN1 - timedelta(days=3)).isoformat(),
            "end": (JAN1 + timedelta(days=3)).isoformat(),
            "bucket": "month",
        },
    ).json()["items"]
    assert [(m["start"], m["end"], m["value"]) for m in months] == [
        ("2025-11-30T16:00:00Z", "2025-12-31T16:00:00Z", "0.000000"),
        ("2025-12-31T16:00:00Z", "2026-01-31T16:00:00Z", "10.625000"),
    ]
    utc = api.get(path, "read", params={
        "start": JAN1.isoformat(), "end": (JAN1 + timedelta(days=1)).isoformat(),
        "timezone": "UTC"}).json()["items"]  # fmt: skip
    assert [d["start"] for d in utc] == ["2025-12-31T00:00:00Z", "2026-01-01T00:00:00Z"]
    assert (
        api.get(
            path,
            "read",
            params={
                "start": JAN1.isoformat(),
                "end": (JAN1 + Q).isoformat(),
                "timezone": "Mars/Base",
            },
        ).status_code
        == 422
    )


def test_interval_csv_export(api: Api) -> None:
    meter = _seed(api)
    response = api.get(
        f"/v1/meters/{meter}/intervals.csv",
        "read",
        params={"start": JAN1.isoformat(), "end": (JAN1 + 6 * Q).isoformat(), "version": "all"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 7
    assert rows[2]["value"] == "" and rows[2]["quality"] == "missing"
    assert rows[3] | {"start": "", "end": ""} == {
        "meter_id": str(meter), "channel": "1.8.0", "start": "", "end": "", "value": "2.000000",
        "quality": "estimated", "version": "2", "source": "estimation", "method": "3",
        "reason_codes": "gap", "created_by": "vee", "comment": "",
    }  # fmt: skip
    assert sum(D(r["value"]) for r in rows if r["version"] == "1" and r["value"]) == D("8.625")


def test_register_reads_in_a_range_and_at_a_time(api: Api) -> None:
    meter = _seed(api)
    path = f"/v1/meters/{meter}/registers"
    reads = _all_pages(api, path, start=JAN1.isoformat(), end=(JAN1 + 8 * Q).isoformat(),
                       limit=2)  # fmt: skip
    assert [r["value"] for r in reads] == [
        "1000.000000",
        "1001.250000",
        "1003.750000",
        "1004.500000",
        "1005.500000",
        "1008.625000",
    ]
    assert reads[0]["source"] == "poll" and reads[0]["clock_offset_s"] is None
    at = api.get(f"{path}/at", "read", params={"at": (JAN1 + 2 * Q).isoformat()}).json()
    assert at["value"] == "1001.250000"  # the 00:15:05 read: the 00:30 one is 5 s later
    exactly = api.get(
        f"{path}/at", "read", params={"at": (JAN1 + 2 * Q + timedelta(seconds=5)).isoformat()}
    ).json()
    assert exactly["value"] == "1003.750000"
    early = api.get(f"{path}/at", "read", params={"at": JAN1.isoformat()})
    assert early.status_code == 404
    api.store.ingest_register_reads([RegisterRead(
        meter_id=meter, channel="1.8.0", read_at=JAN1 - Q, value=D("999.5"),
        collected_at=JAN1, source=Source.DAILY_FREEZE, clock_offset_s=-1.5)])  # fmt: skip
    early = api.get(f"{path}/at", "read", params={"at": JAN1.isoformat()}).json()
    assert (early["value"], early["source"], early["clock_offset_s"]) == (
        "999.500000",
        "daily_freeze",
        -1.5,
    )
