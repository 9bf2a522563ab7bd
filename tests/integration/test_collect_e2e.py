"""A bus worker against the DL/T 645 simulator over loopback TCP: exact intervals, dead meter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.domain import Meter, Protocol, Quality
from amigate.drivers import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.poller import BusWorker, Dlt645Reader
from amigate.simulators import (
    BusSpec,
    Fault,
    FaultKind,
    ManualClock,
    MeterSpec,
    build_bus,
    serve_tcp,
)
from amigate.storage import Store, make_engine, upgrade
from amigate.transports import open_transport

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
LIVE = ("000000000001", "000000000003")
DEAD = "000000000002"
TIMEOUT = 0.3


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[BusWorker, ManualClock, Store]]:
    models = load_models()
    clock = ManualClock(T0)
    spec = BusSpec(
        name="feeder",
        meters=tuple(
            MeterSpec(
                address=a, model="dlt645-2007-single-phase",
                load={"kind": "constant", "kw": "2.4", "noise": 0},
                faults=(Fault(kind=FaultKind.NO_REPLY),) if a == DEAD else (),
            )
            for a in sorted((*LIVE, DEAD))
        ),
    )  # fmt: skip
    server = await serve_tcp(build_bus(spec, models=models, clock=clock, history_days=1))
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=TIMEOUT, retries=0, quiet=0.05)
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    store = Store(engine)
    meters = [
        store.add_meter(Meter(address=a, protocol=Protocol.DLT645_2007,
                              model="dlt645-2007-single-phase", bus="feeder"))
        for a in sorted((*LIVE, DEAD))
    ]  # fmt: skip
    plan = ReadPlan(spread_s=0, timeout_s=TIMEOUT, retries=0, backoff_s=1800, backoff_max_s=3600)
    bus = BusConfig(name="feeder", protocol=Protocol.DLT645_2007, url=url, plan=plan,
                    meters=tuple(meters))  # fmt: skip

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    readers = {m.id: Dlt645Reader(client, m.address) for m in meters if m.id is not None}
    worker = BusWorker(bus, meters, readers, store, models, clock=clock, sleep=sleep)
    try:
        yield worker, clock, store
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
        engine.dispose()


async def test_intervals_are_exact_and_a_dead_meter_does_not_stall_its_bus(
    setup: tuple[BusWorker, ManualClock, Store],
) -> None:
    worker, clock, store = setup
    await worker.restore()
    loop = asyncio.get_running_loop()
    took = []
    for k in range(1, 5):
        clock.now = T0 + k * IV
        started = loop.time()
        report = await worker.poll_cycle(T0 + k * IV)
        took.append(loop.time() - started)
        assert len(report.ok) == 2
    # The dead meter costs its own timeout, then is skipped until its probe is due
    # (30 min later: cycle 3, one attempt), then backs off for an hour.
    assert took[0] < TIMEOUT + 0.5 and took[2] < TIMEOUT + 0.5
    assert took[1] < TIMEOUT and took[3] < TIMEOUT
    ids = {m.address: m.id for m in worker.meters}
    for address in LIVE:
        meter_id = ids[address]
        assert meter_id is not None
        rows = store.intervals(meter_id, "1.8.0", T0, T0 + 10 * IV)
        assert [iv.start for iv in rows] == [T0 + k * IV for k in (1, 2, 3)]
        assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in rows)
        reads = store.register_reads(meter_id, "1.8.0", T0, T0 + 10 * IV)
        assert sum(iv.value or 0 for iv in rows) == reads[-1].value - reads[0].value
        # 2.4 kW constant: 0.6 kWh a quarter hour, to the register's 0.01 kWh.
        assert all(abs((iv.value or 0) - Decimal("0.6")) <= Decimal("0.01") for iv in rows)
        assert store.samples(meter_id, "32.7.0", T0, T0 + 10 * IV)
    dead_id = ids[DEAD]
    assert dead_id is not None and not worker.health[dead_id].available
    assert store.intervals(dead_id, "1.8.0", T0, T0 + 10 * IV) == []  # never read: no series
