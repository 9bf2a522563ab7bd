"""Backfill from meters whose clock is off: records are stamped by the meter's own clock.

A simulated DL/T 645 meter takes a load-profile record when its clock reaches an
interval boundary and stamps it with that clock, as a real one does. The bus
worker checks the clocks (the offset is stored), the gateway is down for a while,
and backfill reads the records across the gap: record times are corrected by the
measured offset and land on the right boundaries; a meter whose clock is out of
tolerance gets its backfilled intervals flagged (``2.1.9``). The rows always add
up to the register delta across the gap.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from amigate.backfill import CLOCK_ERROR
from amigate.clocks import ClockPolicy
from amigate.domain import Meter, Protocol, Quality, Source
from amigate.drivers import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.poller import BusWorker, Dlt645Reader
from amigate.simulators import (
    BusSpec,
    ManualClock,
    MeterPhysics,
    MeterSpec,
    VirtualBus,
    build_bus,
    serve_tcp,
)
from amigate.storage import Store
from amigate.transports import open_transport
from amigate.vee.quality import REASONS

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
MODEL = "dlt645-2007-single-phase"
#: 2 min ahead, and 10 min behind.
AHEAD, BEHIND = "000000000001", "000000000002"
OFFSETS = {AHEAD: 120.0, BEHIND: -600.0}
#: How long before the boundary it stands for each meter takes a record (true time).
LEAD = {AHEAD: timedelta(minutes=2), BEHIND: timedelta(minutes=5)}
LOAD = {"kind": "residential", "kw": "3", "noise": 0.2}
GAP_START, GAP_END = T0 + 2 * IV, T0 + 8 * IV


@dataclass
class Rig:
    sim: VirtualBus
    clock: ManualClock
    store: Store
    client: Dlt645Client
    meters: dict[str, Meter]
    url: str

    def worker(self, policy: ClockPolicy) -> BusWorker:
        plan = ReadPlan(spread_s=0, timeout_s=0.4, retries=0, instantaneous=False)
        meters = list(self.meters.values())
        config = BusConfig(name="feeder", protocol=Protocol.DLT645_2007, url=self.url,
                           plan=plan, meters=tuple(meters))  # fmt: skip
        readers = {m.id: Dlt645Reader(self.client, m.address) for m in meters if m.id}

        async def sleep(seconds: float) -> None:
            self.clock.advance(seconds)
            await asyncio.sleep(0)

        return BusWorker(config, meters, readers, self.store, load_models(), clock=self.clock,
                         sleep=sleep, clock_policy=policy)  # fmt: skip

    def register_at(self, address: str, times: list[datetime]) -> dict[datetime, Decimal]:
        """The meter's import register at true ``times``, from a twin with a right clock."""
        physics = self.sim.meters[address].physics
        twin = MeterPhysics(model=physics.model, shape=physics.shape, tou=physics.tou,
                            start=datetime.fromtimestamp(physics.start_ms / 1000, UTC),
                            seed=physics.seed, tz=physics.tz)  # fmt: skip
        out = {}
        for when in sorted(times):
            twin.advance(when)
            out[when] = twin.import_kwh()[0]
        return out

    def record(self, address: str, boundaries: list[datetime]) -> dict[datetime, Decimal]:
        """The register value the meter recorded for each boundary, by the true time taken.

        The meter 2 min ahead takes the record of boundary ``b`` at ``b - 2 min``; the
        one 10 min behind takes the record it stamps ``b - 15 min`` at ``b - 5 min``,
        nearest to ``b``.
        """
        taken = {b: b - LEAD[address] for b in boundaries}
        values = self.register_at(address, list(taken.values()))
        return {b: values[t] for b, t in taken.items()}


@pytest.fixture
async def rig(sqlite_store: Store) -> AsyncIterator[Rig]:
    clock = ManualClock(T0)
    spec = BusSpec(name="feeder", meters=tuple(
        MeterSpec(address=a, model=MODEL, load=LOAD, clock_offset_s=off)
        for a, off in OFFSETS.items()
    ))  # fmt: skip
    sim = build_bus(spec, models=load_models(), clock=clock, history_days=1)
    meters = {
        a: sqlite_store.add_meter(Meter(address=a, protocol=Protocol.DLT645_2007, model=MODEL,
                                        bus="feeder"))
        for a in OFFSETS
    }  # fmt: skip
    server = await serve_tcp(sim)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=0.4, retries=0, quiet=0.05)
    try:
        yield Rig(sim, clock, sqlite_store, client, meters, url)
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


async def _gap_then_backfill(rig: Rig, policy: ClockPolicy) -> BusWorker:
    """Cycles 1 and 2 (clock checks), the gateway down until cycle 8, then backfill."""
    worker = rig.worker(policy)
    await worker.restore()
    for k in (1, 2, 8):
        rig.clock.now = T0 + k * IV
        await worker.poll_cycle(T0 + k * IV)
    for meter in rig.meters.values():
        assert meter.id is not None
        measured = worker.clocks.offset(meter.id)
        assert measured == pytest.approx(OFFSETS[meter.address], abs=1.0)
    assert worker.backfill.backlog > 0
    await worker.backfill_until(rig.clock() + IV)
    assert worker.backfill.backlog == 0
    return worker


def _polls(rig: Rig, meter: Meter) -> dict[datetime, Decimal]:
    reads = rig.store.register_reads(meter.id or 0, "1.8.0", T0, T0 + timedelta(days=1))
    return {r.read_at: r.value for r in reads if r.source is Source.POLL}


def _gap(rig: Rig, address: str) -> list:  # type: ignore[type-arg]
    meter = rig.meters[address]
    latest = rig.store.intervals(meter.id or 0, "1.8.0", GAP_START, GAP_END)
    # Aligned: one row per slot on the bus's boundaries, each from the load profile.
    assert [iv.start for iv in latest] == [GAP_START + n * IV for n in range(6)]
    assert all(iv.quality is Quality.ACTUAL and iv.duration == IV for iv in latest)
    assert all(iv.source is Source.BACKFILL for iv in latest)
    polls = _polls(rig, meter)
    # Nothing lost: the gap adds up to the register delta across it, to the last digit.
    assert sum(iv.value or 0 for iv in latest) == polls[GAP_END] - polls[GAP_START]
    return latest


def _interior(rig: Rig, address: str, latest: list) -> None:  # type: ignore[type-arg]
    """Interior intervals are the deltas of the records at the corrected boundaries."""
    inner = latest[1:-1]
    recorded = rig.record(address, [iv.start for iv in inner] + [inner[-1].end])
    assert {iv.start: iv.value for iv in inner} == {
        iv.start: recorded[iv.end] - recorded[iv.start] for iv in inner
    }


async def test_records_are_corrected_by_the_measured_offset_and_flagged_beyond_it(
    rig: Rig,
) -> None:
    # A 3 min tolerance, no time sync: the clocks stay as they are.
    await _gap_then_backfill(rig, ClockPolicy(threshold_s=180, sync_limit_s=0))
    ahead = _gap(rig, AHEAD)
    _interior(rig, AHEAD, ahead)
    assert all(CLOCK_ERROR not in iv.reason_codes for iv in ahead)
    # The stored records stand for the corrected boundaries, their offset beside them.
    reads = rig.store.register_reads(rig.meters[AHEAD].id or 0, "1.8.0", GAP_START, GAP_END)
    profile = [r for r in reads if r.source is Source.LOAD_PROFILE]
    assert [r.read_at for r in profile] == [GAP_START + n * IV for n in range(1, 6)]
    assert all(r.clock_offset_s == pytest.approx(120.0, abs=1.0) for r in profile)
    recorded = rig.record(AHEAD, [r.read_at for r in profile])
    assert [b.value - a.value for a, b in itertools.pairwise(profile)] == [
        recorded[b.read_at] - recorded[a.read_at] for a, b in itertools.pairwise(profile)
    ]
    # 10 min behind: each record stands for the boundary nearest its true time (its
    # stamp + 10 min), not its stamp; the intervals are flagged.
    behind = _gap(rig, BEHIND)
    _interior(rig, BEHIND, behind)
    assert all(CLOCK_ERROR in iv.reason_codes for iv in behind)


def test_the_flag_is_the_clock_error_reason_of_the_quality_table() -> None:
    assert REASONS["clock_error"].iec == CLOCK_ERROR


async def test_a_two_minute_offset_is_out_of_the_default_tolerance(rig: Rig) -> None:
    await _gap_then_backfill(rig, ClockPolicy(sync_limit_s=0))  # 60 s tolerance
    ahead = _gap(rig, AHEAD)
    _interior(rig, AHEAD, ahead)
    assert all(CLOCK_ERROR in iv.reason_codes for iv in ahead)
    stored = rig.store.intervals(rig.meters[AHEAD].id or 0, "1.8.0", GAP_START, GAP_END,
                                 version="all")  # fmt: skip
    assert all(iv.reason_codes == () or CLOCK_ERROR not in iv.reason_codes
               for iv in stored if iv.source is Source.POLL)  # fmt: skip
