"""Fixtures of the API tests: the app on a real uvicorn server over each backend, keys, data."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import strategies as st
from sqlalchemy import Engine

from amigate.api import create_app
from amigate.api.v1.schemas import IntervalBlockOut
from amigate.config import Settings, load_settings
from amigate.domain import Interval, Meter, Protocol, Quality, RegisterRead, Source
from amigate.storage import Store
from amigate.storage.api_keys import SCOPES, ApiKeys
from tests.helpers import free_port

#: 2026-01-01 00:00 in Asia/Shanghai (UTC+8, no DST).
JAN1 = datetime(2025, 12, 31, 16, tzinfo=UTC)
Q = timedelta(minutes=15)


@dataclass
class Api:
    """A running API: its client (base URL set), keys by scope, store and settings."""

    client: httpx.Client
    keys: dict[str, str]
    store: Store
    app: FastAPI
    settings: Settings

    def get(self, path: str, scope: str = "admin", **kwargs: Any) -> httpx.Response:
        """GET with a key of ``scope``."""
        return self.client.get(path, headers={"X-API-Key": self.keys[scope]}, **kwargs)

    def post(self, path: str, scope: str = "admin", **kwargs: Any) -> httpx.Response:
        """POST with a key of ``scope``."""
        return self.client.post(path, headers={"X-API-Key": self.keys[scope]}, **kwargs)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                    lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def make_api(engine: Engine, *, inline_reads: bool = True, **overrides: Any) -> Iterator[Api]:
    """The app over ``engine`` on a real server, with one key per scope; on SQLite its reads
    of one meter run in the server's loop, as in an API process, unless ``inline_reads``
    is false."""
    settings = load_settings(**overrides)
    app = create_app(settings, engine, inline_reads=inline_reads)
    keys = {scope: ApiKeys(engine).create(f"test-{scope}", [scope])[1] for scope in SCOPES}
    for base in serve(app):
        with httpx.Client(base_url=base, timeout=30) as client:
            yield Api(client, keys, Store(engine), app, settings)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    """The API on a real HTTP server over each backend."""
    yield from make_api(engine)


@pytest.fixture
def roomy_api(engine: Engine) -> Iterator[Api]:
    """The API at a rate that tests making hundreds of requests stay under."""
    yield from make_api(engine, api_rate_limit=10_000.0, api_rate_burst=10_000)


def add_meter(store: Store, address: str = "000000000001", **kwargs: Any) -> int:
    """Store a DL/T 645 meter and return its id."""
    fields: dict[str, Any] = {"bus": "b1", "model": "dlt645-2007-single-phase"} | kwargs
    meter = store.add_meter(Meter(address=address, protocol=Protocol.DLT645_2007, **fields))
    assert meter.id is not None
    return meter.id


def add_series(
    store: Store,
    meter_id: int,
    start: datetime,
    values: list[Decimal | None],
    *,
    first_register: Decimal = Decimal("1000"),
    multiplier: Decimal = Decimal(1),
    channel: str = "1.8.0",
    read_offset: timedelta = timedelta(seconds=5),
) -> None:
    """Store 15-minute intervals and the register reads they were derived from.

    A read is stored at each boundary (plus ``read_offset``) whose neighbouring
    intervals have values; registers are secondary (value / multiplier).
    """
    intervals = []
    register = first_register
    reads = [RegisterRead(meter_id=meter_id, channel=channel, read_at=start + read_offset,
                          value=register, collected_at=start + read_offset)]  # fmt: skip
    for i, value in enumerate(values):
        at = start + i * Q
        intervals.append(Interval(
            meter_id=meter_id, channel=channel, start=at, end=at + Q, value=value,
            quality=Quality.MISSING if value is None else Quality.ACTUAL,
        ))  # fmt: skip
        if value is not None:
            register += value / multiplier
            end = at + Q + read_offset
            reads.append(RegisterRead(meter_id=meter_id, channel=channel, read_at=end,
                                      value=register, collected_at=end))  # fmt: skip
    store.ingest_intervals(intervals)
    store.ingest_register_reads(reads)


def add_run_cases(store: Store) -> dict[str, tuple[int, int]]:
    """Version-1 series in ``[JAN1, JAN1 + 9 Q)`` that are runs or break them, by name:
    (meter id, interval count). A run read every interval; one ending in an estimated
    interval; one with a gap; one off the 15-minute grid; one of 5-minute intervals; one
    with every interval missing; and intervals that overlap yet span a run's time."""
    names = ["regular", "odd quality", "gapped", "off grid", "short", "unread", "overlapping"]
    ids = {name: add_meter(store, f"{i:012d}") for i, name in enumerate(names, 11)}
    values = [Decimal(f"{i}.{i:02d}") for i in range(1, 9)]
    for name in ("regular", "odd quality"):
        add_series(store, ids[name], JAN1, list(values))
    add_series(store, ids["gapped"], JAN1, values[:3])
    add_series(store, ids["gapped"], JAN1 + 5 * Q, values[5:])
    add_series(store, ids["off grid"], JAN1 + timedelta(minutes=5), values[:7])  # at :05
    add_series(store, ids["unread"], JAN1, [None] * 8)
    five = timedelta(minutes=5)
    store.ingest_intervals([Interval(
        meter_id=ids["odd quality"], channel="1.8.0", start=JAN1 + 8 * Q, end=JAN1 + 9 * Q,
        value=Decimal(4), quality=Quality.ESTIMATED, source=Source.ESTIMATION,
    ), *(Interval(meter_id=ids["short"], channel="1.8.0", start=JAN1 + i * five,
                  end=JAN1 + (i + 1) * five, value=Decimal(i)) for i in range(27)),
      *(Interval(meter_id=ids["overlapping"], channel="1.8.0", start=JAN1 + at,
                 end=JAN1 + at + Q, value=Decimal(1))
        for at in (0 * Q, five, 2 * Q))])  # 0, 5 and 30 minutes  # fmt: skip
    counts = {"regular": 8, "odd quality": 9, "gapped": 6, "off grid": 7, "short": 27,
              "unread": 8, "overlapping": 3}  # fmt: skip
    return {name: (ids[name], counts[name]) for name in names}


def z_time(when: datetime) -> str:
    """A time as the API writes it: RFC 3339 in UTC with ``Z``."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def expand_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``IntervalOut`` items that ``IntervalBlockOut`` documents stand for, each block
    checked against its model."""
    out = []
    for block in blocks:
        IntervalBlockOut.model_validate(block)
        first, step = datetime.fromisoformat(block["start"]), timedelta(seconds=block["interval_s"])
        assert block["values"], block
        assert datetime.fromisoformat(block["end"]) == first + len(block["values"]) * step
        attributes = {k: v for k, v in block.items()
                      if k not in ("start", "end", "interval_s", "values")}  # fmt: skip
        for i, value in enumerate(block["values"]):
            at = first + i * step
            out.append({"start": z_time(at), "end": z_time(at + step), "value": value,
                        **attributes})  # fmt: skip
    return out


#: One interval of a random series: minutes from the previous one's end (negative:
#: overlapping), its length in minutes, its quality and source, and its value in
#: hundredths of a kWh.
IntervalSpec = tuple[int, int, Quality, Source, int]
INTERVAL_SPECS = st.tuples(
    st.sampled_from([0, 0, 0, 0, 5, -5, 10, -10, 15]),
    st.sampled_from([15, 15, 15, 15, 5, 30]),
    st.sampled_from([Quality.ACTUAL, Quality.ACTUAL, Quality.ESTIMATED, Quality.MISSING]),
    st.sampled_from([Source.POLL, Source.POLL, Source.BACKFILL]),
    st.integers(min_value=-500, max_value=10**6),
)
_SPEC_METERS = itertools.count(1000)


def spec_intervals(meter: int, spec: list[IntervalSpec], start: datetime,
                   first_end: datetime | None = None) -> list[Interval]:  # fmt: skip
    """The version-1 intervals of ``spec`` from ``start`` on, the first placed after
    ``first_end`` (default: ``start``); an interval that would start where an earlier
    one does starts at the previous one's end."""
    rows, end, starts = [], start if first_end is None else first_end, set()
    for gap, minutes, quality, source, hundredths in spec:
        at = max(start, end + timedelta(minutes=gap))
        if at in starts:
            at = end
        starts.add(at)
        end = at + timedelta(minutes=minutes)
        value = None if quality is Quality.MISSING else Decimal(hundredths).scaleb(-2)
        rows.append(Interval(meter_id=meter, channel="1.8.0", start=at, end=end, value=value,
                             quality=quality, source=source))  # fmt: skip
    return rows


def add_spec_series(store: Store, spec: list[IntervalSpec], start: datetime = JAN1, *,
                    padded_to: datetime | None = None) -> int:  # fmt: skip
    """A new meter with the version-1 intervals of ``spec`` from ``start`` on (an interval
    that would start where an earlier one does starts at the previous one's end); with
    ``padded_to``, 15-minute intervals of 0.25 kWh fill the 15-minute slots from
    :data:`JAN1` to ``start`` and from the end of ``spec`` to ``padded_to``."""
    meter = add_meter(store, f"{next(_SPEC_METERS):012d}")
    rows = spec_intervals(meter, spec, start)
    end = rows[-1].end if rows else start
    if padded_to is not None:
        after = JAN1 + -(-(end - JAN1) // Q) * Q  # the first slot from the end on
        slots = [JAN1 + i * Q for i in range((start - JAN1) // Q)]
        slots += [after + i * Q for i in range(max(0, (padded_to - after) // Q))]
        rows += [Interval(meter_id=meter, channel="1.8.0", start=at, end=at + Q,
                          value=Decimal("0.25")) for at in slots]  # fmt: skip
    store.ingest_intervals(rows)
    return meter
