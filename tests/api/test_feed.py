"""The change feed: complete, ordered, resumable mid-stream; and line loss per area."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from amigate.domain import Anomaly, Interval, MeterRole, Quality, Severity, Source
from amigate.storage.feed_queries import prune_changes
from tests.api.conftest import JAN1, Api, Q, add_meter, add_series, make_api

D = Decimal


def _read_all(api: Api, cursor: str | None = None, limit: int = 100) -> tuple[list[Any], str]:
    items: list[Any] = []
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/changes", "billing", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return items, cursor


def _activity(api: Api) -> tuple[int, int, int]:
    one, two = add_meter(api.store), add_meter(api.store, "000000000002")
    add_series(api.store, one, JAN1, [D(1)] * 4)
    add_series(api.store, two, JAN1, [D(2)] * 3)
    api.store.ingest_intervals([Interval(
        meter_id=one, channel="1.8.0", start=JAN1 + Q, end=JAN1 + 2 * Q, value=D("1.5"),
        quality=Quality.ESTIMATED, version=2, source=Source.ESTIMATION, created_by="vee",
    )])  # fmt: skip
    [anomaly] = api.store.add_anomalies(
        [Anomaly(kind="stopped_register", start=JAN1, severity=Severity.WARNING, meter_id=two)]
    )
    return one, two, anomaly


def test_the_feed_lists_every_change_in_order(api: Api) -> None:
    one, two, anomaly = _activity(api)
    items, cursor = _read_all(api)
    assert [(i["kind"], i["meter_id"], i["rows"]) for i in items] == [
        ("intervals", one, 4), ("intervals", two, 3), ("versions", one, 1),
        ("anomaly", two, 1)]  # fmt: skip
    first = items[0]
    assert (first["channel"], first["first_start"], first["last_start"]) == (
        "1.8.0",
        "2025-12-31T16:00:00Z",
        "2025-12-31T16:45:00Z",
    )
    assert (items[3]["anomaly_id"], items[3]["status"]) == (anomaly, "open")
    # Nothing new: the same cursor comes back.
    again = api.get("/v1/changes", "billing", params={"cursor": cursor}).json()
    assert again == {"items": [], "next_cursor": cursor, "has_more": False}
    # A replayed batch stores nothing and adds nothing to the feed.
    add_series(api.store, one, JAN1, [D(1)] * 4)
    assert _read_all(api, cursor)[0] == []
    # New data and an anomaly transition come after the cursor.
    add_series(api.store, one, JAN1 + 4 * Q, [D(1)] * 2, first_register=D(1004))
    api.post(f"/v1/anomalies/{anomaly}/acknowledge", "operate", json={"comment": "seen"})
    later, _ = _read_all(api, cursor)
    assert [(i["kind"], i["rows"], i["status"]) for i in later] == [
        ("intervals", 2, None),
        ("anomaly", 1, "acknowledged"),
    ]


def test_resuming_mid_stream_loses_and_duplicates_nothing(api: Api) -> None:
    _activity(api)
    for i in range(3, 9):
        add_series(api.store, add_meter(api.store, f"00000000001{i}"), JAN1, [D(i)] * i)
    everything, _ = _read_all(api)
    assert len(everything) == 10
    # A consumer that pages by 3 and crashes after storing 2 entries of each page.
    seen: list[Any] = []
    checkpoint: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": checkpoint} if checkpoint else {})
        page = api.get("/v1/changes", "billing", params=params).json()
        processed = page["items"][:2]
        seen += processed
        if not processed:
            break
        checkpoint = processed[-1]["cursor"]  # "crash": the third entry was never processed
    assert [i["cursor"] for i in seen] == [i["cursor"] for i in everything]
    assert len({i["cursor"] for i in seen}) == len(seen)
    bad = api.get("/v1/changes", "billing", params={"cursor": "WyJtZXRlcnMiLDFd"})
    assert bad.status_code == 400  # a cursor of another list


def test_pruned_entries_expire_older_cursors_and_are_never_skipped_silently(api: Api) -> None:
    one, _two, _anomaly = _activity(api)
    items, last = _read_all(api)  # seals the four entries
    assert prune_changes(api.store.engine, datetime.now(UTC) - timedelta(days=1)) == 0
    assert prune_changes(api.store.engine, datetime.now(UTC) + timedelta(minutes=1)) == 3
    expired = api.get("/v1/changes", "billing", params={"cursor": items[1]["cursor"]})
    assert expired.status_code == 410
    assert expired.json()["type"].endswith(":cursor-expired")
    assert "start again without a cursor" in expired.json()["detail"]
    assert _read_all(api, last)[0] == []  # the newest pruned entry was processed: nothing missed
    assert _read_all(api)[0] == []  # the mark is never listed
    add_series(api.store, one, JAN1 + 4 * Q, [D(1)] * 2, first_register=D(1004))
    [new] = _read_all(api, last)[0]
    assert (new["kind"], new["rows"]) == ("intervals", 2)
    assert _read_all(api)[0] == [new]
    # A second pruning replaces the mark.
    assert prune_changes(api.store.engine, datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert api.get("/v1/changes", "billing", params={"cursor": last}).status_code == 410
    assert _read_all(api, new["cursor"])[0] == []


def test_an_entry_of_a_transaction_still_running_comes_after_it_commits(
    clean_pg: Engine,
) -> None:
    """A slow transaction's entry is not sealed while it runs; readers go on past newer ones,
    and it comes later, after the cursor they hold: it is not lost."""
    for api in make_api(clean_pg):
        slow_meter, fast_meter = add_meter(api.store), add_meter(api.store, "000000000002")
        cid = api.store.channel_id("1.8.0")
        # Committed first, so the day's chunks exist: creating one would lock out the others.
        add_series(api.store, slow_meter, JAN1 + 20 * Q, [D(1)])
        _, cursor = _read_all(api)
        insert = text(
            "INSERT INTO intervals (meter_id, channel_id, ts, duration_s, value, quality, source) "
            "VALUES (:m, :c, :ts, 900, 1000000, 0, 0)"
        )
        with clean_pg.connect() as slow:
            slow.execute(insert, {"m": slow_meter, "c": cid, "ts": JAN1})
            add_series(api.store, fast_meter, JAN1, [D(1)])  # a newer one commits first
            seen, cursor = _read_all(api, cursor)
            assert [(i["meter_id"], i["rows"]) for i in seen] == [(fast_meter, 1)]
            slow.commit()
        released, _ = _read_all(api, cursor)
        assert [(i["meter_id"], i["first_start"], i["rows"]) for i in released] == [
            (slow_meter, "2025-12-31T16:00:00Z", 1)
        ]


def test_line_loss_per_day(api: Api) -> None:
    supply = add_meter(api.store, transformer_area="T7", role=MeterRole.AREA_TOTAL)
    customers = [add_meter(api.store, f"00000000000{i}", transformer_area="T7")
                 for i in (2, 3)]  # fmt: skip
    add_series(api.store, supply, JAN1, [D("0.3125")] * 96)
    add_series(api.store, customers[0], JAN1, [D("0.125")] * 96)
    add_series(api.store, customers[1], JAN1, [D("0.15625")] * 95 + [None])
    day = {"start": JAN1.isoformat(), "end": (JAN1 + timedelta(days=1)).isoformat()}
    body = api.get("/v1/areas/T7/line-loss", "read", params=day).json()
    assert (body["supply_meters"], body["customer_meters"]) == ([supply], customers)
    [d] = body["days"]
    assert (d["supplied"], d["consumed"], d["loss"]) == ("30.000000", "26.843750", "3.156250")
    assert d["loss_ratio"] == round(3.15625 / 30, 6) and d["complete"] is False
    assert api.get("/v1/areas/none/line-loss", "read", params=day).status_code == 404


_WRITE = st.tuples(st.sampled_from(["intervals", "version"]), st.integers(0, 2),
                   st.integers(0, 40), st.integers(1, 6))  # fmt: skip
_POLL = st.tuples(st.just("poll"), st.integers(1, 4), st.integers(0, 4), st.just(0))


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(steps=st.lists(st.one_of(_WRITE, _POLL), min_size=1, max_size=16))
def test_a_consumer_of_the_feed_ends_with_what_is_stored(
    roomy_api: Api, steps: list[tuple[str, int, int, int]]
) -> None:
    """Writes (new intervals, later versions) interleaved with a consumer that pages the
    feed, reads each entry's range as the README says and keeps what it reads by (meter,
    start, version), and crashes after any entry of a page (resuming from the last entry
    it processed): in the end it holds exactly every stored version, with nothing
    processed twice."""
    api = roomy_api
    meters = [add_meter(api.store, f"{next(_FEED_METERS):012d}") for _ in range(3)]
    replica: dict[tuple[int, str, int], tuple[Any, str]] = {}
    processed: list[str] = []
    checkpoint: list[str | None] = [_read_all(api)[1]]  # what came before is not ours

    def consume(limit: int, crash_after: int) -> None:
        params: dict[str, Any] = {"limit": limit, "cursor": checkpoint[0]}
        page = api.get("/v1/changes", "billing", params=params).json()
        for entry in page["items"][:crash_after or None]:
            if entry["kind"] in ("intervals", "versions") and entry["meter_id"] in meters:
                last = datetime.fromisoformat(entry["last_start"]) + timedelta(seconds=1)
                for item in _series(api, entry["meter_id"], entry["first_start"], last):
                    replica[entry["meter_id"], item["start"], item["version"]] = (
                        item["value"], item["quality"])  # fmt: skip
            processed.append(entry["cursor"])
            checkpoint[0] = entry["cursor"]

    version = 2
    for kind, a, b, c in steps:
        if kind == "poll":
            consume(a, b)
        elif kind == "intervals":
            add_series(api.store, meters[a], JAN1 + b * Q, [D(b + i) / 10 for i in range(c)])
        else:
            stored = api.store.intervals(meters[a], "1.8.0", JAN1, JAN1 + 50 * Q)
            if stored:
                at = stored[b % len(stored)].start
                version += 1
                api.store.ingest_intervals([Interval(
                    meter_id=meters[a], channel="1.8.0", start=at, end=at + Q,
                    value=D(version), quality=Quality.ESTIMATED, version=version,
                    source=Source.ESTIMATION, created_by="vee",
                )])  # fmt: skip
    for _ in range(100):  # drain
        before = len(processed)
        consume(5, 0)
        if len(processed) == before:
            break
    assert len(set(processed)) == len(processed)
    stored_now = {(m, item["start"], item["version"]): (item["value"], item["quality"])
                  for m in meters
                  for item in _series(api, m, JAN1.isoformat(), JAN1 + 60 * Q)}  # fmt: skip
    assert replica == stored_now


_FEED_METERS = itertools.count(5000)


def _series(api: Api, meter: int, start: str, end: datetime) -> list[Any]:
    """Every version of the intervals of ``meter`` starting in ``[start, end)``."""
    response = api.get(f"/v1/meters/{meter}/intervals", "read",
                       params={"start": start, "end": end.isoformat(), "version": "all"})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[Any] = response.json()["items"]
    return items
