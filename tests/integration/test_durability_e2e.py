"""The database goes away during collection and comes back: nothing lost, nothing doubled.

Two bus workers read the same simulated meters (over loopback TCP) at the same
simulated times, each into its own SQLite database; one database is locked by
another writer for a few cycles (a real ``database is locked``). Afterwards
both databases hold exactly the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from amigate.domain import Meter, Protocol, Quality
from amigate.drivers import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.metrics import Metrics
from amigate.poller import BusWorker, Dlt645Reader
from amigate.simulators import BusSpec, ManualClock, MeterSpec, build_bus, serve_tcp
from amigate.spool import Spool
from amigate.storage import Store, make_engine
from amigate.transports import open_transport
from tests.conftest import PG_URL
from tests.faultproxy import FaultProxy
from tests.helpers import impatient_sqlite_store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
ADDRESSES = ("000000000001", "000000000002")
MODEL = "dlt645-2007-single-phase"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    models = load_models()
    clock = ManualClock(T0)
    spec = BusSpec(
        name="feeder",
        meters=tuple(
            MeterSpec(address=a, model=MODEL, load={"kind": "constant", "kw": "2.4", "noise": 0})
            for a in ADDRESSES
        ),
    )
    server = await serve_tcp(build_bus(spec, models=models, clock=clock, history_days=1))
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=0.5, retries=0, quiet=0.05)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    def worker(store: Store, spool: Spool | None, metrics: Metrics | None = None) -> BusWorker:
        meters = [
            store.add_meter(Meter(address=a, protocol=Protocol.DLT645_2007, model=MODEL,
                                  bus="feeder"))
            for a in ADDRESSES
        ]  # fmt: skip
        plan = ReadPlan(spread_s=0, timeout_s=0.5, retries=0)
        bus = BusConfig(name="feeder", protocol=Protocol.DLT645_2007, url=url, plan=plan,
                        meters=tuple(meters))  # fmt: skip
        readers = {m.id: Dlt645Reader(client, m.address) for m in meters if m.id is not None}
        return BusWorker(bus, meters, readers, store, models, clock=clock, sleep=sleep,
                         metrics=metrics, spool=spool)  # fmt: skip

    stores = {name: impatient_sqlite_store(tmp_path / f"{name}.db") for name in ("plain", "outage")}
    try:
        yield {"clock": clock, "worker": worker, "stores": stores, "tmp": tmp_path}
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
        for store in stores.values():
            store.engine.dispose()


def _spool_rows(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("amigate_spool_rows", {"bus": "feeder"})
    return value or 0.0


async def test_database_outage_loses_nothing_and_duplicates_nothing(
    env: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    clock: ManualClock = env["clock"]
    plain, outage = env["stores"]["plain"], env["stores"]["outage"]
    metrics = Metrics()
    spool = Spool(env["tmp"] / "spool" / "feeder.spool", max_rows=10_000, name="feeder")
    reference = env["worker"](plain, None)
    worker = env["worker"](outage, spool, metrics)
    lock: sqlite3.Connection | None = None
    depth = []
    with caplog.at_level(logging.INFO, logger="amigate.poller"):
        for k in range(1, 9):
            if k == 3:  # another writer holds the database: every write fails
                lock = sqlite3.connect(env["tmp"] / "outage.db", isolation_level=None)
                lock.execute("BEGIN EXCLUSIVE")
            if k == 6 and lock is not None:
                lock.execute("ROLLBACK")
                lock.close()
            clock.now = T0 + k * IV
            await reference.poll_cycle(T0 + k * IV)
            clock.now = T0 + k * IV
            await worker.poll_cycle(T0 + k * IV)
            depth.append(_spool_rows(metrics))
    spool.close()
    # rows pile up in the spool during the outage (cycles 3..5), none left after
    assert depth[:2] == [0, 0] and 0 < depth[2] < depth[3] < depth[4] and depth[5:] == [0, 0, 0]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable: spooling" in m for m in messages) == 1
    assert sum("drained" in m for m in messages) == 1
    for address in ADDRESSES:
        ids = {m.address: m.id for m in outage.meters()}
        ref_ids = {m.address: m.id for m in plain.meters()}
        got = outage.intervals(ids[address] or 0, "1.8.0", T0, T0 + 10 * IV)
        want = plain.intervals(ref_ids[address] or 0, "1.8.0", T0, T0 + 10 * IV)
        assert [(iv.start, iv.end, iv.value, iv.quality) for iv in got] == [
            (iv.start, iv.end, iv.value, iv.quality) for iv in want
        ]
        assert [iv.start for iv in got] == [T0 + k * IV for k in range(1, 8)]
        assert all(iv.quality is Quality.ACTUAL for iv in got)
        reads = outage.register_reads(ids[address] or 0, "1.8.0", T0, T0 + 10 * IV)
        assert len(reads) == 8
        assert sum(iv.value or 0 for iv in got) == reads[-1].value - reads[0].value
    for table in ("intervals", "register_reads", "samples"):
        assert outage.count(table) == plain.count(table), table


async def test_database_away_at_start_up_collects_and_loses_no_interval(
    env: dict[str, Any], clean_pg: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart while TimescaleDB is unreachable: reads are spooled and normalized later."""
    clock: ManualClock = env["clock"]
    url = make_url(PG_URL)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.up()
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    try:
        plain, away = env["stores"]["plain"], Store(engine)
        reference = env["worker"](plain, None)
        first = env["worker"](away, None)
        for k in (1, 2):
            for worker in (reference, first):
                clock.now = T0 + k * IV
                await worker.poll_cycle(T0 + k * IV)
        # The gateway restarts while the database is unreachable.
        proxy.down()
        engine.dispose()
        spool = Spool(env["tmp"] / "spool" / "away.spool", max_rows=10_000, name="feeder")
        second = BusWorker(first.bus, first.meters, first.readers, away, load_models(),
                           clock=clock, sleep=first._sleep, spool=spool)  # fmt: skip
        with caplog.at_level(logging.INFO, logger="amigate.poller"):
            for k in range(3, 9):
                if k == 6:
                    proxy.up()
                for worker in (reference, second):
                    clock.now = T0 + k * IV
                    await worker.poll_cycle(T0 + k * IV)
                if k < 6:
                    assert not second.restored and len(spool) > 0
        spool.close()
        assert second.restored and len(spool) == 0
        messages = [r.getMessage() for r in caplog.records]
        assert sum("reads go to the spool" in m for m in messages) == 1
        assert sum("series resumed" in m for m in messages) == 1
        ids = {m.address: m.id for m in away.meters()}
        ref_ids = {m.address: m.id for m in plain.meters()}
        for address in ADDRESSES:
            got = away.intervals(ids[address] or 0, "1.8.0", T0, T0 + 10 * IV)
            want = plain.intervals(ref_ids[address] or 0, "1.8.0", T0, T0 + 10 * IV)
            assert [(iv.start, iv.value, iv.quality) for iv in got] == [
                (iv.start, iv.value, iv.quality) for iv in want
            ]
            assert [iv.start for iv in got] == [T0 + k * IV for k in range(1, 8)]
            assert all(iv.quality is Quality.ACTUAL for iv in got)
        for table in ("intervals", "register_reads", "samples"):
            assert away.count(table) == plain.count(table), table
    finally:
        engine.dispose()
        proxy.close()
