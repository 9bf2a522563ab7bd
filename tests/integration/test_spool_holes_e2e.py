"""A full spool drops reads while the database is away; the hole they leave is filled.

Simulated meters answer over loopback TCP, a real bus worker reads them into a
spool of a few dozen rows, and the database goes away for longer than the spool
can hold: the oldest reads are dropped, leaving a hole with no rows at all. When
the database is back, the first stored read after the hole closes a gap span
from the last one before it, and backfill replaces it with the DL/T 645 meters'
load-profile records; a Modbus meter (no memory) keeps missing intervals and the
span. SQLite is made unavailable by another writer's lock, TimescaleDB by a TCP
proxy that goes down, with the gateway restarting while the hole is pending.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from amigate.domain import Meter, Protocol, Quality, Source
from amigate.drivers import Dlt645Client
from amigate.drivers.modbus import ModbusBus, ModbusMeter
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.metrics import Metrics
from amigate.normalize import SPAN_REASON
from amigate.poller import BusWorker, Dlt645Reader, MeterReader, ModbusReader
from amigate.simulators import BusSpec, ManualClock, MeterSpec, VirtualBus, build_bus, serve_tcp
from amigate.simulators.modbus_meter import ModbusSimMeter
from amigate.simulators.modbus_server import ModbusSimServer
from amigate.spool import Spool
from amigate.storage import Store, make_engine
from amigate.transports import open_transport
from tests.conftest import PG_URL
from tests.faultproxy import FaultProxy
from tests.helpers import impatient_sqlite_store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
DLT = "dlt645-2007-single-phase"
ADDRESSES = ("000000000001", "000000000002")
LOAD = {"kind": "residential", "kw": "3", "noise": 0.2}
#: Rows the spool holds: two and a half cycles of the two meters' six registers.
MAX_ROWS = 30
PLAN = ReadPlan(spread_s=0, timeout_s=0.5, retries=0, instantaneous=False)
#: Channels the single-phase meter's load-profile records carry (the tariffs are not).
PROFILED = ("1.8.0", "2.8.0")


@dataclass
class Rig:
    clock: ManualClock
    url: str
    protocol: Protocol
    readers: dict[str, MeterReader]
    sim: VirtualBus | None = None

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await asyncio.sleep(0)

    def meters(self, store: Store, model: str) -> list[Meter]:
        known = {m.address: m for m in store.meters()}
        return [
            known.get(a) or store.add_meter(Meter(address=a, protocol=self.protocol, model=model,
                                                  bus="feeder"))
            for a in self.readers
        ]  # fmt: skip

    def worker(self, store: Store, spool: Spool, model: str = DLT, **kwargs: Any) -> BusWorker:
        meters = self.meters(store, model)
        bus = BusConfig(name="feeder", protocol=self.protocol, url=self.url, plan=PLAN,
                        meters=tuple(meters))  # fmt: skip
        readers = {m.id: self.readers[m.address] for m in meters if m.id is not None}
        return BusWorker(bus, meters, readers, store, load_models(), clock=self.clock,
                         sleep=self.sleep, spool=spool, **kwargs)  # fmt: skip

    def truth(self, address: str, start: datetime, end: datetime) -> dict[datetime, Decimal]:
        """The simulated meter's own load-profile deltas per slot in ``[start, end)``."""
        assert self.sim is not None
        physics = self.sim.meters[address].physics
        values = {r.stamp.replace(tzinfo=physics.tz).astimezone(UTC): r.import_kwh
                  for r in physics.load_profile}  # fmt: skip
        return {a: values[b] - values[a] for a, b in itertools.pairwise(sorted(values))
                if start <= a < end}  # fmt: skip


@pytest.fixture
async def dlt() -> AsyncIterator[Rig]:
    clock = ManualClock(T0)
    spec = BusSpec(name="feeder", meters=tuple(
        MeterSpec(address=a, model=DLT, load=LOAD) for a in ADDRESSES
    ))  # fmt: skip
    sim = build_bus(spec, models=load_models(), clock=clock, history_days=1)
    server = await serve_tcp(sim)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=0.5, retries=0, quiet=0.05)
    readers: dict[str, MeterReader] = {a: Dlt645Reader(client, a) for a in ADDRESSES}
    try:
        yield Rig(clock, url, Protocol.DLT645_2007, readers, sim)
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


async def _cycles(rig: Rig, worker: BusWorker, ks: range) -> None:
    for k in ks:
        rig.clock.now = T0 + k * IV
        await worker.poll_cycle(T0 + k * IV)


def _polls(store: Store, meter_id: int, channel: str) -> dict[datetime, Decimal]:
    reads = store.register_reads(meter_id, channel, T0, T0 + timedelta(days=1))
    return {r.read_at: r.value for r in reads if r.source is Source.POLL}


def _hole(store: Store, meter_id: int, first: int, last: int) -> list[datetime]:
    """The boundaries in cycles ``first..last`` whose polled read is not stored."""
    polls = _polls(store, meter_id, "1.8.0")
    return [T0 + k * IV for k in range(first, last + 1) if T0 + k * IV not in polls]


def _assert_one_original_per_slot(store: Store, meter_id: int, channel: str, end: int) -> None:
    original = store.intervals(meter_id, channel, T0 + IV, T0 + end * IV, version="original")
    assert [iv.start for iv in original] == [T0 + k * IV for k in range(1, end)], channel


def _assert_filled(rig: Rig, store: Store, meter: Meter, hole: list[datetime], end: int) -> None:
    """Every slot actual, the hole from the load profile, the sum the register delta."""
    assert meter.id is not None
    start, stop = T0 + IV, T0 + end * IV
    for channel in PROFILED:
        latest = store.intervals(meter.id, channel, start, stop)
        assert [iv.start for iv in latest] == [T0 + k * IV for k in range(1, end)], channel
        assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in latest)
        polls = _polls(store, meter.id, channel)
        assert sum(iv.value or 0 for iv in latest) == polls[stop] - polls[start], channel
        _assert_one_original_per_slot(store, meter.id, channel, end)
    # The hole: from the last stored read before it to the first one after it.
    gap_start, gap_end = hole[0] - IV, hole[-1] + IV
    latest = {iv.start: iv for iv in store.intervals(meter.id, "1.8.0", start, stop)}
    filled = [latest[gap_start + n * IV] for n in range((gap_end - gap_start) // IV)]
    assert all(iv.source is Source.BACKFILL for iv in filled)
    assert {iv.start: iv.value for iv in filled} == rig.truth(meter.address, gap_start, gap_end)
    # Tariff registers are not in the records: their hole stays one span, exactly.
    tariff = store.intervals(meter.id, "1.8.1", start, stop)
    spans = [iv for iv in tariff if SPAN_REASON in iv.reason_codes]
    assert [(s.start, s.end) for s in spans] == [(gap_start, gap_end)]
    polls = _polls(store, meter.id, "1.8.1")
    assert sum(iv.value or 0 for iv in tariff) == polls[stop] - polls[start]
    _assert_one_original_per_slot(store, meter.id, "1.8.1", end)


#: The meters by address, and by address the boundaries whose reads were dropped.
Holes = tuple[dict[str, Meter], dict[str, list[datetime]]]


def _holes(store: Store) -> Holes:
    """The meters by address and the boundaries of cycles 3..10 whose reads were dropped."""
    meters = {m.address: m for m in store.meters()}
    holes = {a: _hole(store, meters[a].id or 0, 3, 10) for a in ADDRESSES}
    assert all(len(h) >= 4 for h in holes.values()), holes  # reads were dropped
    return meters, holes


async def _assert_backfilled(
    rig: Rig, store: Store, worker: BusWorker, holes: Holes
) -> None:
    """The holes are spans backfill has queued; once it ran, every slot is filled."""
    meters, missing = holes
    assert worker.backfill.backlog > 0
    await worker.backfill_until(rig.clock() + IV)
    assert worker.backfill.backlog == 0
    for address in ADDRESSES:
        _assert_filled(rig, store, meters[address], missing[address], end=12)


async def test_a_hole_left_by_a_full_spool_is_backfilled(
    dlt: Rig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = impatient_sqlite_store(tmp_path / "a.db")
    metrics = Metrics()
    spool = Spool(tmp_path / "feeder.spool", max_rows=MAX_ROWS, name="feeder")
    worker = dlt.worker(store, spool, metrics=metrics)
    await worker.restore()
    try:
        await _cycles(dlt, worker, range(1, 3))
        lock = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another writer: every write fails
        with caplog.at_level(logging.ERROR, logger="amigate.spool"):
            await _cycles(dlt, worker, range(3, 11))
        assert len(spool) == MAX_ROWS and not worker.restored
        dropped = metrics.registry.get_sample_value(
            "amigate_spool_dropped_rows_total", {"bus": "feeder", "kind": "backfillable"}
        )
        assert dropped is not None and dropped > 0
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and all("backfill fills" in m for m in errors)
        lock.execute("ROLLBACK")
        lock.close()
        await _cycles(dlt, worker, range(11, 13))  # the database is back
        assert worker.restored and len(spool) == 0
        await _assert_backfilled(dlt, store, worker, _holes(store))
    finally:
        spool.close()
        store.engine.dispose()


async def test_a_pending_hole_survives_a_restart_while_timescaledb_is_away(
    dlt: Rig, tmp_path: Path, clean_pg: Engine
) -> None:
    url = make_url(PG_URL)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.up()
    engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    path = tmp_path / "feeder.spool"
    spool = Spool(path, max_rows=MAX_ROWS, name="feeder")
    try:
        store = Store(engine)
        worker = dlt.worker(store, spool)
        await worker.restore()
        await _cycles(dlt, worker, range(1, 3))
        proxy.down()
        engine.dispose()
        await _cycles(dlt, worker, range(3, 8))
        assert len(spool) == MAX_ROWS
        # The gateway restarts with the hole still pending and the database still away.
        spool.close()
        spool = Spool(path, max_rows=MAX_ROWS, name="feeder")
        assert len(spool) == MAX_ROWS
        worker = BusWorker(worker.bus, worker.meters, worker.readers, store, load_models(),
                           clock=dlt.clock, sleep=dlt.sleep, spool=spool)  # fmt: skip
        await _cycles(dlt, worker, range(8, 11))
        assert not worker.restored
        proxy.up()
        await _cycles(dlt, worker, range(11, 13))
        assert worker.restored and len(spool) == 0
        holes = _holes(store)
        # Another restart before backfill: the new worker finds the spans in the database.
        worker = BusWorker(worker.bus, worker.meters, worker.readers, store, load_models(),
                           clock=dlt.clock, sleep=dlt.sleep, spool=spool)  # fmt: skip
        await worker.restore()
        await _assert_backfilled(dlt, store, worker, holes)
    finally:
        spool.close()
        engine.dispose()
        proxy.close()


@pytest.fixture
async def modbus() -> AsyncIterator[Rig]:
    clock = ManualClock(T0)
    model = load_models()["sdm120"]
    sims = [ModbusSimMeter.build(model, n, clock=clock, load=LOAD) for n in (1, 2)]
    server = ModbusSimServer(sims)
    url = await server.serve_tcp()
    bus = ModbusBus(url, switch_pause=0.001)
    await bus.open()
    readers: dict[str, MeterReader] = {
        str(n): ModbusReader(ModbusMeter(bus, model, n, timeout=0.5, retries=0, backoff=None))
        for n in (1, 2)
    }
    try:
        yield Rig(clock, url, Protocol.MODBUS, readers)
    finally:
        await bus.aclose()
        await server.aclose()


async def test_a_hole_of_a_meter_without_memory_is_missing_intervals_and_a_span(
    modbus: Rig, tmp_path: Path
) -> None:
    store = impatient_sqlite_store(tmp_path / "m.db")
    # Two meters of three registers: five cycles of reads.
    spool = Spool(tmp_path / "modbus.spool", max_rows=MAX_ROWS, name="feeder")
    worker = modbus.worker(store, spool, model="sdm120")
    await worker.restore()
    try:
        await _cycles(modbus, worker, range(1, 3))
        lock = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        await _cycles(modbus, worker, range(3, 15))
        assert len(spool) == MAX_ROWS
        lock.execute("ROLLBACK")
        lock.close()
        await _cycles(modbus, worker, range(15, 17))
        assert worker.restored and len(spool) == 0
        assert worker.backfill.backlog == 0  # nothing to read it back from
        start, stop = T0 + IV, T0 + 16 * IV
        for meter in store.meters():
            assert meter.id is not None
            hole = _hole(store, meter.id, 3, 14)
            assert len(hole) >= 4, hole
            gap_start, gap_end = hole[0] - IV, hole[-1] + IV
            for channel in ("1.8.0", "2.8.0", "15.8.0"):
                latest = store.intervals(meter.id, channel, start, stop)
                assert [iv.start for iv in latest] == [T0 + k * IV for k in range(1, 16)]
                spans = [iv for iv in latest if SPAN_REASON in iv.reason_codes]
                assert [(s.start, s.end) for s in spans] == [(gap_start, gap_end)], channel
                inside = [iv for iv in latest if gap_start < iv.start < gap_end]
                assert inside and all(iv.quality is Quality.MISSING and iv.value is None
                                      for iv in inside)  # fmt: skip
                others = [iv for iv in latest if not gap_start <= iv.start < gap_end]
                assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in others)
                polls = _polls(store, meter.id, channel)
                assert sum(iv.value or 0 for iv in latest) == polls[stop] - polls[start]
                _assert_one_original_per_slot(store, meter.id, channel, 16)
    finally:
        spool.close()
        store.engine.dispose()
