"""The fast paths of the interval series against the general one, on random series: starts
back to back, apart or overlapping, of several lengths, qualities and sources, whole and
cut by a page limit. What the database concatenates and the API pieces together must be
what the model writes for each stored row, and the blocks must expand to it; what
validation reads must be the stored rows; local buckets must add them up."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from amigate.api.v1 import fastjson
from amigate.api.v1.blocks import plain_blocks, row_blocks
from amigate.api.v1.intervals import interval_out
from amigate.api.v1.schemas import energy
from amigate.billing.buckets import Unit, aggregate
from amigate.domain import Interval, Quality, Source
from amigate.storage import Store, api_queries, plain_series
from amigate.storage.api_queries import Version
from amigate.storage.vee_queries import load_window
from tests.api.conftest import (
    INTERVAL_SPECS,
    JAN1,
    Api,
    IntervalSpec,
    Q,
    add_spec_series,
    expand_blocks,
    z_time,
)


def _items(text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(f"[{text}]")
    return found


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@example(spec=[(0, 15, Quality.ACTUAL, Source.POLL, 1), (-5, 15, Quality.ACTUAL, Source.POLL, 2),
               (5, 15, Quality.ACTUAL, Source.POLL, 3)], limit=5)  # 0, 10, 30: a run's span
@given(spec=st.lists(INTERVAL_SPECS, min_size=1, max_size=12), limit=st.integers(1, 14))
def test_fast_paths_write_what_the_model_writes(
    store: Store, spec: list[IntervalSpec], limit: int
) -> None:
    meter = add_spec_series(store, spec)
    cid = store.channel_id("1.8.0")
    until = JAN1 + timedelta(days=1)
    rows, more = api_queries.series(store.engine, meter, cid, JAN1, until, version="original",
                                    limit=limit)  # fmt: skip
    expected = [interval_out(r).model_dump(mode="json") for r in rows]
    plain = plain_series.plain_series(store.engine, meter, cid, JAN1, until, original=False,
                                      limit=limit)  # fmt: skip
    assert plain is not None  # version 1 only
    columns, plain_more = plain
    assert plain_more == more
    assert _items(fastjson.plain_intervals(columns)) == expected
    assert expand_blocks(_items(",".join(plain_blocks(columns)))) == expected
    assert expand_blocks(_items(",".join(row_blocks(rows)))) == expected


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@example(spec=[(0, 15, Quality.ACTUAL, Source.POLL, 1), (-5, 15, Quality.ACTUAL, Source.POLL, 2),
               (5, 15, Quality.ACTUAL, Source.POLL, 3)])  # 0, 10, 30: a run's span
@given(spec=st.lists(INTERVAL_SPECS, min_size=1, max_size=12))
def test_the_validation_window_holds_the_stored_intervals(
    store: Store, spec: list[IntervalSpec]
) -> None:
    """Validation reads a series back to back from aggregates alone, every column otherwise;
    either way it gets the stored starts, lengths, values and qualities."""
    meter = add_spec_series(store, spec)
    until = JAN1 + timedelta(days=1)
    rows, _ = api_queries.series(store.engine, meter, store.channel_id("1.8.0"), JAN1, until,
                                 version="original")  # fmt: skip
    window = load_window(store.engine, [meter], JAN1, until, samples=False)
    got = window.intervals[(meter, "1.8.0")]
    assert (got.ts, got.duration, got.value, got.quality) == (
        [int(r.ts.timestamp()) for r in rows], [r.duration_s for r in rows],
        [r.value for r in rows], [r.quality for r in rows],
    )  # fmt: skip


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(offset=st.integers(0, 96), spec=st.lists(INTERVAL_SPECS, min_size=1, max_size=20),
       cut=st.tuples(st.integers(0, 2 * 96), st.integers(1, 2 * 96)),
       unit=st.sampled_from(["hour", "day", "month"]),
       zone=st.sampled_from(["Asia/Shanghai", "Asia/Kathmandu", "America/St_Johns", "UTC"]),
       version=st.sampled_from(["latest", "original"]))  # fmt: skip
def test_buckets_add_up_the_stored_intervals(
    roomy_api: Api, offset: int, spec: list[IntervalSpec], cut: tuple[int, int], unit: Unit,
    zone: str, version: Version,
) -> None:  # fmt: skip
    """Local hour, day and month buckets (TimescaleDB's ``time_bucket`` on PostgreSQL), in
    zones a quarter or half an hour off the hour: each holds what its intervals add up to,
    as :func:`aggregate` sums the stored rows."""
    api = roomy_api
    meter = add_spec_series(api.store, spec, JAN1 + offset * Q)
    api.store.ingest_intervals([Interval(
        meter_id=meter, channel="1.8.0", start=JAN1 + offset * Q, end=JAN1 + (offset + 1) * Q,
        value=Decimal("0.5"), quality=Quality.ESTIMATED, version=2, source=Source.ESTIMATION,
    )])  # a later version of the first interval: latest and original differ  # fmt: skip
    low, high = sorted(cut)
    start, end = JAN1 + low * Q, JAN1 + max(high, low + 1) * Q
    response = api.get(f"/v1/meters/{meter}/intervals/aggregate", "read", params={
        "start": start.isoformat(), "end": end.isoformat(), "bucket": unit, "timezone": zone,
        "version": version})  # fmt: skip
    assert response.status_code == 200, response.text
    rows, _ = api_queries.series(api.store.engine, meter, api.store.channel_id("1.8.0"), start,
                                 end, version=version)  # fmt: skip
    expected = aggregate(((r.ts, r.duration_s, r.value, r.quality) for r in rows), start, end,
                         unit, ZoneInfo(zone))  # fmt: skip
    assert [(b["start"], b["end"], b["value"], b["intervals"], b["missing"], b["estimated"],
             b["completeness"]) for b in response.json()["items"]] == [
        (z_time(b.start), z_time(b.end), energy(b.value), b.with_value, b.missing, b.not_actual,
         round(b.completeness(start, end), 6)) for b in expected
    ]  # fmt: skip
