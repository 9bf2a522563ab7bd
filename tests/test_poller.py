"""Bus workers with fake drivers: schedule, storage, log once down and once recovered."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.domain import Meter, Protocol, Quality
from amigate.errors import ReadTimeout
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import MeterModel, PointSpec
from amigate.normalize import SPAN_REASON
from amigate.poller import BusWorker, cycle_points, register_capacity
from amigate.simulators import ManualClock
from amigate.spool import Spool
from amigate.storage import Store

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
MODEL = "dlt645-2007-single-phase"


class FakeReader:
    """A meter whose register climbs 0.25 kWh a cycle; fails while ``down`` > 0."""

    def __init__(self, start: str = "100.00") -> None:
        self.register = Decimal(start)
        self.down = 0
        self.calls = 0

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Decimal | None]:
        self.calls += 1
        self.register += Decimal("0.25")
        if self.down:
            self.down -= 1
            raise ReadTimeout("no reply within 0.5 s")
        return {p.channel: (self.register if p.unit == "kWh" else Decimal("230.1")) for p in points}


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


def _worker(
    store: Store, models: dict[str, MeterModel], readers: dict[int, FakeReader], clock: ManualClock
) -> BusWorker:
    meters = [
        store.add_meter(
            Meter(address=f"00000000000{i}", protocol=Protocol.DLT645_2007, model=MODEL, bus="b1",
                  ct_ratio=Decimal(10), pt_ratio=Decimal(2))
        )
        for i in (1, 2)
    ]  # fmt: skip
    bus = BusConfig(
        name="b1", protocol=Protocol.DLT645_2007, url="tcp://127.0.0.1:1",
        plan=ReadPlan(spread_s=10, backoff_s=60, backoff_max_s=60), meters=tuple(meters),
    )  # fmt: skip

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return BusWorker(
        bus, meters, {m.id: readers[i] for i, m in enumerate(meters) if m.id}, store, models,
        clock=clock, sleep=sleep,
    )  # fmt: skip


async def test_a_meter_that_fails_three_times_logs_once_down_once_up_and_keeps_the_energy(
    store: Store, models: dict[str, MeterModel], caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(T0)
    good, flaky = FakeReader(), FakeReader("5000.00")
    worker = _worker(store, models, {0: good, 1: flaky}, clock)
    await worker.restore()
    caplog.set_level(logging.INFO, logger="amigate.availability")
    reports = []
    for k in range(1, 7):
        if k == 3:
            flaky.down = 3
        clock.now = T0 + k * IV  # the boundary
        reports.append(await worker.poll_cycle(T0 + k * IV))
        status = {m.address: m.status for m in store.meters()}
        assert status["000000000002"] == ("unavailable" if 3 <= k <= 5 else "active"), k
        assert status["000000000001"] == "active"
    ids = [m.id for m in worker.meters]
    assert [r.ok for r in reports] == [ids, ids, ids[:1], ids[:1], ids[:1], ids]
    assert [r.failed for r in reports] == [[], [], ids[1:], ids[1:], ids[1:], []]
    logged = [r for r in caplog.records if r.name == "amigate.availability"]
    records = [(r.levelname, r.getMessage()) for r in logged]
    assert [level for level, _ in records] == ["WARNING", "INFO"]
    assert "000000000002" in records[0][1] and "unavailable" in records[0][1]
    assert "recovered after 3 failed read(s)" in records[1][1]

    assert ids[1] is not None
    rows = store.intervals(ids[1], "1.8.0", T0, T0 + 10 * IV, version="all")
    originals = [(iv.start, iv.quality) for iv in rows if iv.version == 1]
    assert originals == [
        (T0 + IV, Quality.ACTUAL),
        (T0 + 2 * IV, Quality.MISSING),
        (T0 + 3 * IV, Quality.MISSING),
        (T0 + 4 * IV, Quality.MISSING),
        (T0 + 5 * IV, Quality.MISSING),
    ]
    (span,) = [iv for iv in rows if iv.version == 2]
    assert (span.start, span.end, span.reason_codes) == (T0 + 2 * IV, T0 + 6 * IV, (SPAN_REASON,))
    # Register 5000.25 at the first read, 5001.50 at the last: 1.25 kWh × CT 10 × PT 2.
    latest = store.intervals(ids[1], "1.8.0", T0, T0 + 10 * IV)
    assert sum(iv.value for iv in latest if iv.value is not None) == Decimal("1.25") * 20
    # Samples are stored with the PT ratio applied; reads are attributed to their boundary.
    first = ids[0]
    assert first is not None
    volts = store.samples(first, "32.7.0", T0, T0 + 10 * IV)[0]
    assert volts.value == Decimal("460.2")
    reads = store.register_reads(first, "1.8.0", T0, T0 + 10 * IV)
    assert [r.read_at.replace(microsecond=0) for r in reads][:2] == [T0 + IV, T0 + 2 * IV]


async def test_a_dead_meter_is_skipped_until_its_probe_is_due(
    store: Store, models: dict[str, MeterModel]
) -> None:
    clock = ManualClock(T0)
    good, dead = FakeReader(), FakeReader()
    dead.down = 1000
    worker = _worker(store, models, {0: good, 1: dead}, clock)
    for k in range(1, 5):  # backoff 60 s < 15 min: probed every cycle, one attempt each
        clock.now = T0 + k * IV
        await worker.poll_cycle(T0 + k * IV)
    assert dead.calls == 4
    worker.plan = ReadPlan(backoff_s=3600, backoff_max_s=3600)
    worker.health[worker.meters[1].id or 0].next_probe = T0 + 10 * IV
    clock.now = T0 + 5 * IV
    report = await worker.poll_cycle(T0 + 5 * IV)
    assert report.skipped == [worker.meters[1].id] and dead.calls == 4


async def test_restart_resumes_from_what_is_stored(
    store: Store, models: dict[str, MeterModel]
) -> None:
    clock = ManualClock(T0)
    reader = FakeReader()
    first = _worker(store, models, {0: reader, 1: FakeReader()}, clock)
    for k in (1, 2):
        clock.now = T0 + k * IV
        await first.poll_cycle(T0 + k * IV)
    # A new process: same store, meters already there.
    second = BusWorker(
        first.bus, store.meters(), first.readers, store, models, clock=clock, sleep=first._sleep
    )
    await second.restore()
    clock.now = T0 + 3 * IV
    await second.poll_cycle(T0 + 3 * IV)
    meter_id = first.meters[0].id
    assert meter_id is not None
    rows = store.intervals(meter_id, "1.8.0", T0, T0 + 10 * IV, version="all")
    assert [(iv.start, iv.quality, iv.value) for iv in rows] == [
        (T0 + IV, Quality.ACTUAL, Decimal(5)),
        (T0 + 2 * IV, Quality.ACTUAL, Decimal(5)),
    ]


def test_cycle_points_and_register_capacity(models: dict[str, MeterModel]) -> None:
    model = models["dlt645-2007-three-phase"]
    points = cycle_points(model)
    assert {p.kind for p in points} == {"energy", "instantaneous"}
    assert {p.kind for p in cycle_points(model, instantaneous=False)} == {"energy"}
    energy = model.point("1.8.0", "energy")  # type: ignore[arg-type]
    assert register_capacity(model, energy) == Decimal(1000000)
    sdm = models["sdm630"]
    assert register_capacity(sdm, sdm.point("1.8.0")) is None  # float32: never wraps


async def test_the_given_spool_file_is_used_even_while_empty(
    store: Store, models: dict[str, MeterModel], tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    first = _worker(store, models, {0: FakeReader(), 1: FakeReader()}, clock)
    spool = Spool(tmp_path / "b1.spool", max_rows=100)
    worker = BusWorker(first.bus, store.meters(), first.readers, store, models, clock=clock,
                       sleep=first._sleep, spool=spool)  # fmt: skip
    assert len(spool) == 0 and worker.spool is spool
