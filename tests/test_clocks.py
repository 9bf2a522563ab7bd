"""Meter clocks with fake readers: daily checks, flagging, one sync a day per bus, episodes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from amigate.clocks import CLOCK_OFFSET, ClockPolicy, read_dlt645_clock
from amigate.config import load_settings
from amigate.domain import Meter, Protocol
from amigate.errors import ConfigError, DataError
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import MeterModel, PointSpec
from amigate.metrics import Metrics
from amigate.poller import BusWorker
from amigate.simulators import ManualClock
from amigate.storage import Store

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
MODEL = "dlt645-2007-single-phase"


class FakeBus:
    """Meter clocks behind one bus; a broadcast corrects those within ``accept_s``."""

    def __init__(self, accept_s: float = 300.0) -> None:
        self.offsets: dict[str, float] = {}
        self.syncs: list[datetime] = []
        self.accept_s = accept_s


class FakeMeter:
    def __init__(self, bus: FakeBus, address: str, offset_s: float) -> None:
        self.bus, self.address = bus, address
        bus.offsets[address] = offset_s
        self.register = Decimal("100")
        self.clock_reads = 0

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Decimal | None]:
        self.register += Decimal("0.25")
        return {p.channel: (self.register if p.unit == "kWh" else Decimal("230")) for p in points}

    async def read_clock(self, tz: ZoneInfo, clock: ManualClock) -> tuple[datetime, float]:
        self.clock_reads += 1
        return clock(), self.bus.offsets[self.address]

    async def broadcast_time(self, when: datetime) -> None:
        self.bus.syncs.append(when)
        for address, offset in self.bus.offsets.items():
            if abs(offset) <= self.bus.accept_s:
                self.bus.offsets[address] = 0.2


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


def _worker(
    store: Store, models: dict[str, MeterModel], offsets: Sequence[float], clock: ManualClock,
    bus: FakeBus, *, metrics: Metrics | None = None, meters: list[Meter] | None = None,
) -> tuple[BusWorker, dict[int, FakeMeter]]:  # fmt: skip
    meters = meters or [
        store.add_meter(Meter(address=f"00000000000{i}", protocol=Protocol.DLT645_2007,
                              model=MODEL, bus="b1"))
        for i in range(1, len(offsets) + 1)
    ]  # fmt: skip
    config = BusConfig(
        name="b1", protocol=Protocol.DLT645_2007, url="tcp://127.0.0.1:1",
        plan=ReadPlan(spread_s=0), meters=tuple(meters),
    )  # fmt: skip
    readers = {
        m.id: FakeMeter(bus, m.address, off) for m, off in zip(meters, offsets, strict=True) if m.id
    }

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    worker = BusWorker(config, meters, readers, store, models, clock=clock, sleep=sleep,
                       metrics=metrics, clock_policy=ClockPolicy())  # fmt: skip
    return worker, readers


async def _cycles(worker: BusWorker, clock: ManualClock, start: int, stop: int) -> None:
    for k in range(start, stop):
        clock.now = T0 + k * IV
        await worker.poll_cycle(T0 + k * IV)


async def test_clock_checked_once_a_day_and_synced_once_then_corrected(
    store: Store, models: dict[str, MeterModel], caplog: pytest.LogCaptureFixture
) -> None:
    clock, bus, metrics = ManualClock(T0), FakeBus(), Metrics()
    worker, readers = _worker(store, models, [120.0, 5.0, 900.0], clock, bus, metrics=metrics)
    await worker.restore()
    caplog.set_level(logging.INFO, logger="amigate.clocks")
    await _cycles(worker, clock, 1, 2)
    ok, fine, far = (m.id for m in worker.meters)
    assert ok and fine and far
    # One sync after the first checks: meter 1 (+120 s) is within the limit.
    assert len(bus.syncs) == 1
    infos = [r for r in caplog.records if r.getMessage().startswith("bus b1: broadcast")]
    assert len(infos) == 1 and infos[0].levelno == logging.INFO
    assert "1 meter(s)" in infos[0].getMessage() and "+120.0 s" in infos[0].getMessage()
    warns = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1 and "000000000003" in warns[0].getMessage()
    # The meters that were off are checked again at the next cycle; the other one is not.
    await _cycles(worker, clock, 2, 3 * 96)
    checks = store.clock_checks(ok)
    assert [c.offset_s for c in checks][:2] == [120.0, 0.2]
    assert [c.corrected for c in checks][:2] == [False, True]
    assert len(checks) == 4  # day 1: check + re-check, then once a day (days 2 and 3)
    assert readers[fine].clock_reads == 3  # once a day
    assert len(bus.syncs) == 1  # far stays off but is beyond the limit: no more syncs
    far_checks = store.clock_checks(far)
    assert [c.corrected for c in far_checks] == [False] * len(far_checks)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # named once
    # One episode per meter: the corrected meter's is over, the far meter's goes on.
    done = store.open_anomalies(CLOCK_OFFSET)
    assert [a.meter_id for a in done] == [far]
    assert done[0].evidence["checks"] == len(far_checks)
    assert done[0].evidence["offset_s"] == 900.0
    assert store.latest_clock_checks([ok])[ok].offset_s == 0.2
    assert b'amigate_clock_offset_seconds{bus="b1",meter="000000000003"} 900.0' in metrics.render()


async def test_at_most_one_sync_a_day_per_bus(
    store: Store, models: dict[str, MeterModel]
) -> None:
    clock, bus = ManualClock(T0), FakeBus(accept_s=0)  # meters refuse every sync
    worker, _ = _worker(store, models, [120.0, 90.0], clock, bus)
    await worker.restore()
    await _cycles(worker, clock, 1, 2 * 96 + 8)
    # Cycles over 49.75 h: a sync at 0.25 h, 24.25 h, 48.25 h, never two within 24 h
    # (and the re-check after each sync finds the meters still off).
    assert [s - bus.syncs[0] for s in bus.syncs] == [timedelta(hours=h) for h in (0, 24, 48)]
    episodes = store.open_anomalies(CLOCK_OFFSET)
    assert sorted(a.meter_id or 0 for a in episodes) == sorted(m.id or 0 for m in worker.meters)


async def test_episode_survives_a_restart_and_ends_once(
    store: Store, models: dict[str, MeterModel]
) -> None:
    clock, bus = ManualClock(T0), FakeBus(accept_s=0)
    worker, _ = _worker(store, models, [-200.0], clock, bus)
    await worker.restore()
    await _cycles(worker, clock, 1, 2)
    (episode,) = store.open_anomalies(CLOCK_OFFSET)
    assert episode.evidence["offset_s"] == -200.0 and episode.severity == "warning"
    # A new worker (restart) finds the open episode and the last check.
    again, _ = _worker(store, models, [-210.0], clock, bus, meters=worker.meters)
    await again.restore()
    await _cycles(again, clock, 2, 97)  # the next check is due a day after the first
    (episode,) = store.open_anomalies(CLOCK_OFFSET)
    assert episode.evidence["offset_s"] == -210.0 and episode.evidence["checks"] == 2
    bus.offsets[worker.meters[0].address] = 1.0
    await _cycles(again, clock, 97, 97 + 97)
    assert store.open_anomalies(CLOCK_OFFSET) == []
    assert store.count("clock_checks") == 3


async def test_offset_from_the_midpoint_of_the_time_read() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    clock = ManualClock(datetime(2026, 5, 4, 4, 0, 0, tzinfo=UTC))

    class Reply:
        def __init__(self, value: object) -> None:
            self.values = [type("V", (), {"value": value})()]

    async def read(di: int) -> Reply:
        if di == 0x04000101:
            return Reply(datetime(2026, 5, 4))
        clock.advance(0.4)  # the round trip of the time request: 0.8 s
        shown = "12:02:00"
        clock.advance(0.4)
        return Reply(shown)

    checked_at, offset = await read_dlt645_clock(read, tz, clock)
    assert checked_at == datetime(2026, 5, 4, 4, 0, 0, 400000, tzinfo=UTC)
    assert offset == pytest.approx(120.1)  # +0.5 s: the meter truncates to whole seconds


async def test_a_failed_clock_check_is_retried_an_hour_later(
    store: Store, models: dict[str, MeterModel]
) -> None:
    clock, bus = ManualClock(T0), FakeBus()
    worker, readers = _worker(store, models, [0.0], clock, bus)
    await worker.restore()
    (reader,) = readers.values()
    calls = 0

    async def broken(tz: ZoneInfo, clock: ManualClock) -> tuple[datetime, float]:
        nonlocal calls
        calls += 1
        raise DataError("no clock")

    reader.read_clock = broken  # type: ignore[method-assign]
    await _cycles(worker, clock, 1, 9)  # 2 hours
    assert calls == 2 and store.count("clock_checks") == 0


def test_clock_settings_are_validated() -> None:
    s = load_settings()
    assert (s.clock_check_hours, s.clock_offset_threshold_s, s.clock_sync_limit_s) == (24, 60, 300)
    with pytest.raises(ConfigError, match="clock_sync_limit_s"):
        load_settings(clock_sync_limit_s=30)
    with pytest.raises(ConfigError, match="clock_check_hours"):
        load_settings(clock_check_hours=0)
    assert ClockPolicy.from_settings(load_settings(clock_sync_limit_s=0)).sync_limit_s == 0
