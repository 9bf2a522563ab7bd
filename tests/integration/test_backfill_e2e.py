"""Backfill end to end: a gap is filled from the simulated meter's load profile.

A bus worker reads simulated DL/T 645 meters over loopback TCP and over a real
pseudo-terminal; the gateway is "down" for a while (no cycles), or a meter stops
answering; the read that comes back closes the gap with a span, and backfill
replaces the span with the meter's own interval records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from amigate.domain import Meter, Protocol, Quality, Source
from amigate.drivers import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.metrics import Metrics
from amigate.normalize import SPAN_REASON
from amigate.poller import BusWorker, Dlt645Reader
from amigate.simulators import (
    BusSpec,
    Fault,
    FaultKind,
    ManualClock,
    MeterSpec,
    PtyServer,
    VirtualBus,
    build_bus,
    serve_tcp,
)
from amigate.storage import Store
from amigate.storage.models import IntervalVersionRow
from amigate.transports import open_transport
from tests.helpers import run_amigate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
HOME, SHOP = "000000000001", "000000000002"
TIMEOUT = 0.8  # real seconds: ample for a reply on a loaded machine; a fault waits it out
LOAD = {"kind": "residential", "kw": "3", "noise": 0.2}


@dataclass
class Rig:
    bus: VirtualBus
    clock: ManualClock
    store: Store
    client: Dlt645Client
    meters: list[Meter]
    url: str

    def worker(self, **kwargs: object) -> BusWorker:
        plan = ReadPlan(spread_s=0, timeout_s=TIMEOUT, retries=0, backoff_s=60,
                        backoff_max_s=60, instantaneous=False)  # fmt: skip
        config = BusConfig(name="feeder", protocol=Protocol.DLT645_2007, url=self.url,
                           plan=plan, meters=tuple(self.meters))  # fmt: skip
        readers = {m.id: Dlt645Reader(self.client, m.address) for m in self.meters if m.id}

        async def sleep(seconds: float) -> None:
            self.clock.advance(seconds)
            await asyncio.sleep(0)

        return BusWorker(config, self.meters, readers, self.store, load_models(),
                         clock=self.clock, sleep=sleep, **kwargs)  # type: ignore[arg-type]

    def meter(self, address: str) -> Meter:
        return next(m for m in self.meters if m.address == address)

    def truth(self, address: str, start: datetime, end: datetime) -> dict[datetime, Decimal]:
        """The simulated meter's own load-profile deltas per slot in ``[start, end)``."""
        physics = self.bus.meters[address].physics
        values = {
            r.stamp.replace(tzinfo=physics.tz).astimezone(UTC): r.import_kwh
            for r in physics.load_profile
        }
        return {a: values[b] - values[a] for a, b in itertools.pairwise(sorted(values))
                if start <= a < end}  # fmt: skip


@pytest.fixture(params=["tcp", "pty"])
async def rig(request: pytest.FixtureRequest, sqlite_store: Store) -> AsyncIterator[Rig]:
    clock = ManualClock(T0)
    spec = BusSpec(name="feeder", meters=(
        MeterSpec(address=HOME, model="dlt645-2007-single-phase", load=LOAD),
        MeterSpec(address=SHOP, model="dlt645-2007-three-phase",
                  load={"kind": "commercial", "kw": 4, "noise": 0.1},
                  faults=(Fault(kind=FaultKind.NO_REPLY, after=2 * 3600 + 60, count=4),)),
    ))  # fmt: skip
    bus = build_bus(spec, models=load_models(), clock=clock, history_days=2)
    meters = [
        sqlite_store.add_meter(Meter(address=m.address, protocol=Protocol.DLT645_2007,
                                     model=m.model, bus="feeder"))
        for m in spec.meters
    ]  # fmt: skip
    if request.param == "tcp":
        server = await serve_tcp(bus)
        url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    else:
        pty = PtyServer(bus)
        await pty.start()
        url = f"serial://{pty.path}?baud=9600&parity=E"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=TIMEOUT, retries=0, quiet=0.05)
    try:
        yield Rig(bus, clock, sqlite_store, client, meters, url)
    finally:
        await transport.aclose()
        if request.param == "tcp":
            server.close()
            await server.wait_closed()
        else:
            await pty.aclose()


async def _cycle(rig: Rig, worker: BusWorker, k: int) -> None:
    rig.clock.now = T0 + k * IV
    await worker.poll_cycle(T0 + k * IV)


def _status(rig: Rig, at: datetime) -> dict[int, dict[str, object]]:
    """``amigate backfill status --json`` by meter id."""
    env = {"AMIGATE_DATABASE_URL": str(rig.store.engine.url)}
    done = run_amigate("backfill", "status", "--json", "--at", at.isoformat(), env=env)
    assert done.returncode == 0, done.stderr
    return {row["id"]: row for row in json.loads(done.stdout)}


def _polls(store: Store, meter_id: int) -> dict[datetime, Decimal]:
    reads = store.register_reads(meter_id, "1.8.0", T0, T0 + timedelta(days=1))
    return {r.read_at: r.value for r in reads if r.source is Source.POLL}


def _versions(store: Store) -> int:
    with Session(store.engine) as session:
        return int(session.scalar(select(func.count()).select_from(IntervalVersionRow)) or 0)


async def test_a_gateway_outage_is_filled_from_the_load_profile(rig: Rig) -> None:
    metrics = Metrics()
    worker = rig.worker(metrics=metrics)
    await worker.restore()
    for k in (1, 2):
        await _cycle(rig, worker, k)
    # The gateway is down for cycles 3..7; cycle 8 reads again and closes the gap.
    await _cycle(rig, worker, 8)
    home = rig.meter(HOME)
    assert home.id is not None
    gap_start, gap_end = T0 + 2 * IV, T0 + 8 * IV
    latest = rig.store.intervals(home.id, "1.8.0", gap_start, gap_end)
    assert latest[0].reason_codes == (SPAN_REASON,) and latest[0].duration == 6 * IV
    assert all(iv.quality is Quality.MISSING for iv in latest[1:])
    assert worker.backfill.backlog == 2 * 2 * 6  # two meters, 1.8.0 and 2.8.0, six slots
    assert b"amigate_backfill_backlog_intervals" in metrics.render()
    status = _status(rig, at=T0 + 9 * IV)
    assert status[home.id]["pending_intervals"] == 2 * 6 and status[home.id]["backfilled"] == 0

    filled = await worker.backfill_until(rig.clock() + IV)
    assert filled == 2 * 2 * 6 and worker.backfill.backlog == 0

    reads = rig.store.register_reads(home.id, "1.8.0", T0, T0 + 9 * IV)
    polls = _polls(rig.store, home.id)
    latest = rig.store.intervals(home.id, "1.8.0", gap_start, gap_end)
    assert [iv.start for iv in latest] == [gap_start + n * IV for n in range(6)]
    assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in latest)
    assert all(iv.source is Source.BACKFILL for iv in latest)
    # Nothing lost: the gap adds up to the register delta across it, to the last digit.
    assert sum(iv.value or 0 for iv in latest) == polls[gap_end] - polls[gap_start]
    # Interior intervals are the meter's own records.
    truth = rig.truth(HOME, gap_start + IV, gap_end - IV)
    assert {iv.start: iv.value for iv in latest[1:-1]} == truth
    # The records are stored as register reads; the intervals as collected stay.
    profile = [r.read_at for r in reads if r.source is Source.LOAD_PROFILE]
    assert profile == [gap_start + n * IV for n in range(1, 6)]
    original = rig.store.intervals(home.id, "1.8.0", gap_start, gap_end, version="original")
    assert all(iv.quality is Quality.MISSING for iv in original)

    # Running again changes nothing; a restarted worker finds nothing left to do.
    stored = _versions(rig.store)
    assert await worker.backfill_until(rig.clock() + IV) == 0
    again = rig.worker()
    await again.restore()
    assert again.backfill.backlog == 0
    assert _versions(rig.store) == stored
    status = _status(rig, at=T0 + 9 * IV)
    assert status[home.id]["pending_intervals"] == 0 and status[home.id]["backfilled"] == 2 * 6


async def test_backfill_resumes_after_a_restart_in_small_chunks(rig: Rig) -> None:
    worker = rig.worker()
    await worker.restore()
    await _cycle(rig, worker, 1)
    await _cycle(rig, worker, 9)  # eight quarter hours unread (SHOP is silent by then)
    home = rig.meter(HOME)
    assert home.id is not None
    # The process dies before backfilling; the new one finds the span in the database.
    worker = rig.worker()
    worker.backfill.chunk = 3
    await worker.restore()
    assert worker.backfill.backlog == 2 * 8  # HOME's 1.8.0 and 2.8.0
    # Eleven days on, the meter's memory (ten days) no longer holds the gap.
    later = _status(rig, at=T0 + timedelta(days=11))
    assert (later[home.id]["pending_gaps"], later[home.id]["expired_gaps"]) == (0, 2)
    result = await worker.backfill.step(worker.readers, rig.clock)
    assert result.records == 3 and worker.backfill.backlog == 2 * 5
    # Part-way, the latest rows still add up: records so far, then what is left as a span.
    latest = rig.store.intervals(home.id, "1.8.0", T0 + IV, T0 + 9 * IV)
    assert [iv.source for iv in latest[:3]] == [Source.BACKFILL] * 3
    assert latest[3].reason_codes == (SPAN_REASON,) and latest[3].duration == 5 * IV
    assert all(iv.quality is Quality.MISSING for iv in latest[4:])
    polls = _polls(rig.store, home.id)
    total = polls[T0 + 9 * IV] - polls[T0 + IV]
    assert sum(iv.value or 0 for iv in latest) == total
    # Another restart mid-way, then the rest.
    worker = rig.worker()
    worker.backfill.chunk = 3
    await worker.restore()
    await worker.backfill_until(rig.clock() + IV)
    latest = rig.store.intervals(home.id, "1.8.0", T0 + IV, T0 + 9 * IV)
    assert len(latest) == 8 and all(iv.duration == IV for iv in latest)
    assert all(iv.quality is Quality.ACTUAL for iv in latest)
    assert sum(iv.value or 0 for iv in latest) == total


async def test_an_unreachable_meter_is_backfilled_when_it_answers_again(rig: Rig) -> None:
    worker = rig.worker()
    await worker.restore()
    shop = rig.meter(SHOP)
    assert shop.id is not None
    # SHOP stops answering 2 h into the simulation (cycle 9) for four requests.
    for k in range(1, 15):
        await _cycle(rig, worker, k)
        await worker.backfill_until(rig.clock() + IV - timedelta(seconds=30))
    latest = rig.store.intervals(shop.id, "1.8.0", T0 + IV, T0 + 14 * IV)
    original = rig.store.intervals(shop.id, "1.8.0", T0 + IV, T0 + 14 * IV, version="original")
    assert any(iv.quality is Quality.MISSING for iv in original)  # the outage happened
    assert len(latest) == 13
    assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in latest)
    assert any(iv.source is Source.BACKFILL for iv in latest)
    polls = _polls(rig.store, shop.id)
    assert sum(iv.value or 0 for iv in latest) == polls[T0 + 14 * IV] - polls[T0 + IV]
    assert worker.backfill.backlog == 0


async def test_the_daily_freeze_is_read_once_a_day_after_local_midnight(rig: Rig) -> None:
    worker = rig.worker()
    await worker.restore()
    home = rig.meter(HOME)
    assert home.id is not None
    physics = rig.bus.meters[HOME].physics

    def frozen() -> dict[datetime, dict[str, Decimal]]:
        reads = [
            r for channel in ("1.8.0", "1.8.1", "1.8.4", "2.8.0")
            for r in rig.store.register_reads(home.id or 0, channel, T0 - timedelta(days=2),
                                              T0 + timedelta(days=2))
            if r.source is Source.DAILY_FREEZE
        ]  # fmt: skip
        out: dict[datetime, dict[str, Decimal]] = {}
        for r in reads:
            out.setdefault(r.read_at, {})[r.channel] = r.value
        return out

    await _cycle(rig, worker, 1)
    await worker.idle_work(rig.clock() + IV)
    midnight = datetime(2026, 5, 3, 16, 0, tzinfo=UTC)  # 4 May 00:00 in Asia/Shanghai
    last = physics.freezes[-1]
    assert frozen() == {midnight: {"1.8.0": last.import_kwh[0], "1.8.1": last.import_kwh[1],
                                   "1.8.4": last.import_kwh[4], "2.8.0": last.export_kwh}}
    # Once a day: later cycles of the same local day read no freeze.
    await _cycle(rig, worker, 2)
    await worker.idle_work(rig.clock() + IV)
    assert len(frozen()) == 1
    # After the meter's next midnight the new freeze is read.
    rig.clock.now = midnight + timedelta(days=1, minutes=20)
    await worker.idle_work(rig.clock() + IV)
    stamps = sorted(frozen())
    assert stamps == [midnight, midnight + timedelta(days=1)]
    assert frozen()[stamps[1]]["1.8.0"] == physics.freezes[-1].import_kwh[0]
