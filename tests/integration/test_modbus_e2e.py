"""Modbus simulator and driver end to end: real pymodbus servers and clients on a
pseudo-terminal (RTU), on loopback TCP as a transparent gateway (RTU over TCP) and
as Modbus TCP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from amigate.codecs.modbus_values import value_resolution
from amigate.drivers.modbus import ModbusBus, ModbusMeter
from amigate.errors import (
    DeviceRejected,
    MeterUnavailable,
    PointUnsupported,
    ReadTimeout,
)
from amigate.meter_models import MeterModel, Register, load_models
from amigate.simulators import ManualClock
from amigate.simulators.modbus_meter import ModbusSimMeter, apply_fault
from amigate.simulators.modbus_server import ModbusSimServer

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
MODELS = {k: m for k, m in load_models().items() if m.modbus is not None}
LOAD = {"kind": "constant", "kw": "3.6", "pf": "0.93", "noise": 0}
MODES = ["pty", "rtu+tcp", "modbus+tcp"]


@dataclass
class Bus:
    clock: ManualClock
    server: ModbusSimServer
    bus: ModbusBus

    def sim(self, device_id: int) -> ModbusSimMeter:
        return self.server.meters[device_id]

    def meter(self, device_id: int, **options: float | None) -> ModbusMeter:
        sim = self.sim(device_id)
        return ModbusMeter(self.bus, sim.model, device_id, **options)  # type: ignore[arg-type]


async def _serve(server: ModbusSimServer, mode: str) -> str:
    if mode == "pty":
        return await server.serve_pty()
    return await server.serve_tcp(rtu=mode == "rtu+tcp")


@pytest.fixture(params=MODES)
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """Every Modbus model on one multi-drop bus, IDs 1..9 in model order."""
    clock = ManualClock(T0)
    sims = [
        ModbusSimMeter.build(model, index, clock=clock, load=LOAD, initial_kwh=Decimal("98765.43"))
        for index, model in enumerate(MODELS.values(), start=1)
    ]
    server = ModbusSimServer(sims)
    url = await _serve(server, request.param)
    bus = ModbusBus(url, switch_pause=0.001)
    await bus.open()
    try:
        yield Bus(clock, server, bus)
    finally:
        await bus.aclose()
        await server.aclose()


def _tolerance(model: MeterModel, channel: str, expected: Decimal) -> Decimal:
    point = model.point(channel)
    reg = point.source
    assert isinstance(reg, Register)
    factor = Decimal("0.001") if point.unit in ("W", "Wh", "var") else Decimal(1)
    in_unit = expected / factor
    return value_resolution(in_unit, reg.dtype, reg.scale) * factor


async def test_every_model_reads_back_what_the_simulator_set(fleet: Bus) -> None:
    for device_id, model in enumerate(MODELS.values(), start=1):
        values = await fleet.meter(device_id).poll()
        expected = fleet.sim(device_id).values()
        assert [v.channel for v in values] == [p.channel for p in model.points]
        for value in values:
            want = expected[value.channel]
            assert value.value is not None, (model.id, value.channel)
            assert abs(value.value - want) <= _tolerance(model, value.channel, want), (
                model.id, value.channel, value.value, want,
            )  # fmt: skip
            assert value.unit in ("kWh", "kW", "kvar", "V", "A", "Hz", "")


@pytest.mark.parametrize("model_id", sorted(MODELS))
async def test_each_model_over_rtu_on_a_pty(model_id: str) -> None:
    clock = ManualClock(T0)
    sim = ModbusSimMeter.build(MODELS[model_id], 17, clock=clock, load=LOAD)
    async with ModbusSimServer([sim]) as server:
        url = await server.serve_pty()
        async with ModbusBus(url) as bus:
            meter = ModbusMeter(bus, sim.model, 17, timeout=0.5)
            values = {v.channel: v.value for v in await meter.poll()}
            assert bus.stats.requests < len(sim.model.points)  # block reads
    for channel, want in sim.values().items():
        got = values[channel]
        assert got is not None and abs(got - want) <= _tolerance(sim.model, channel, want)


async def test_energy_integrates_power_and_a_frozen_counter_stops(fleet: Bus) -> None:
    meter = fleet.meter(9)  # sdm630
    before = {v.channel: v.value for v in await meter.poll()}
    fleet.clock.advance(hours=2)
    after = {v.channel: v.value for v in await meter.poll()}
    assert after["1.7.0"] == Decimal("3.6")
    assert after["1.8.0"] - before["1.8.0"] == pytest.approx(Decimal("7.2"), abs=Decimal("0.01"))
    apply_fault(fleet.sim(9), "frozen_counter")
    fleet.clock.advance(hours=1)
    frozen = {v.channel: v.value for v in await meter.poll()}
    assert frozen["1.8.0"] == after["1.8.0"] and frozen["1.7.0"] == Decimal("3.6")


async def test_block_reads_use_fewer_requests_than_points(fleet: Bus) -> None:
    meter = fleet.meter(9)
    start = fleet.bus.stats.requests
    blocks = await meter.poll()
    by_block = fleet.bus.stats.requests - start
    singles = await meter.poll(single=True)
    assert by_block == 3
    assert fleet.bus.stats.requests - start - by_block == 24
    assert blocks == singles


async def test_exception_2_marks_the_point_unsupported_once(fleet: Bus) -> None:
    apply_fault(fleet.sim(5), "unsupported", "2.8.0")  # em24 variant without export
    meter = fleet.meter(5)
    values = {v.channel: v for v in await meter.poll()}
    assert values["2.8.0"].value is None and values["2.8.0"].missing == "unsupported"
    assert values["1.8.0"].value is not None and values["13.7.0"].value is not None
    assert meter.unsupported == {"2.8.0"}
    start = fleet.bus.stats.requests
    again = {v.channel: v for v in await meter.poll()}
    assert again["2.8.0"].missing == "unsupported"
    assert fleet.bus.stats.requests - start == 2  # no retry of the missing register
    assert fleet.bus.stats.exceptions == 2  # the block, then the point itself
    with pytest.raises(PointUnsupported):
        await meter.read_point("2.8.0")


async def test_other_exception_codes_raise_device_rejected(fleet: Bus) -> None:
    apply_fault(fleet.sim(1), "exception", "4")
    with pytest.raises(DeviceRejected) as info:
        await fleet.meter(1).poll()
    assert info.value.code == 4 and not isinstance(info.value, PointUnsupported)
    assert fleet.meter(1).available  # it answered: not isolated


async def test_wrong_word_order_firmware_gives_implausible_values(fleet: Bus) -> None:
    good = {v.channel: v.value for v in await fleet.meter(6).poll()}  # em340, CDAB
    apply_fault(fleet.sim(6), "swapped_words")
    bad = {v.channel: v.value for v in await fleet.meter(6).poll()}
    assert Decimal(200) < good["32.7.0"] < Decimal(260)
    assert bad["32.7.0"] != good["32.7.0"] and bad["32.7.0"] > Decimal(10_000)


async def test_unknown_id_stays_silent(fleet: Bus) -> None:
    ghost = ModbusMeter(fleet.bus, MODELS["sdm630"], 200, timeout=0.15, retries=0)
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await ghost.poll()
    assert 0.14 < time.monotonic() - started < 0.5
    assert len(await fleet.meter(9).poll()) == 24


async def test_dead_meter_does_not_delay_the_others_beyond_its_timeout(fleet: Bus) -> None:
    apply_fault(fleet.sim(2), "no_reply")
    fake_now = [0.0]
    dead = fleet.meter(2, timeout=0.3, retries=1)
    dead._clock = lambda: fake_now[0]
    live = [fleet.meter(i, timeout=0.3) for i in (1, 3, 4, 5, 6, 7, 8, 9)]
    quiet = time.monotonic()
    await asyncio.gather(*(m.poll() for m in live))
    baseline = time.monotonic() - quiet

    async def timed(meter: ModbusMeter) -> float:
        t0 = time.monotonic()
        with contextlib.suppress(ReadTimeout, MeterUnavailable):
            await meter.poll()
        return time.monotonic() - t0

    started = time.monotonic()
    times = await asyncio.gather(timed(dead), *(timed(m) for m in live))
    total = time.monotonic() - started
    own_timeout = 0.3 * 2  # timeout x (retries + 1)
    assert total < baseline + own_timeout + 0.3
    assert max(times[1:]) < baseline + own_timeout + 0.3
    assert not dead.available
    # Isolated: the next round does not touch the dead meter at all.
    started = time.monotonic()
    with pytest.raises(MeterUnavailable):
        await dead.poll()
    await asyncio.gather(*(m.poll() for m in live))
    assert time.monotonic() - started < baseline + 0.25
    # Probed after the backoff with one attempt; many misses never drop the connection.
    for _ in range(6):
        fake_now[0] += 1000
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout):
            await dead.poll()
        assert time.monotonic() - t0 < 0.3 + 0.2
    assert dead.failures == 7
    assert len(await live[0].poll()) == len(live[0].model.points)
    # Back to life: the next probe brings it back.
    fleet.sim(2).silent = False
    fake_now[0] += 10_000
    assert len(await dead.poll()) == len(dead.model.points)
    assert dead.available and dead.failures == 0


async def test_without_driver_backoff_a_dead_meter_is_tried_every_time(fleet: Bus) -> None:
    """The bus worker isolates meters itself; the driver then never refuses a poll."""
    apply_fault(fleet.sim(2), "no_reply")
    dead = fleet.meter(2, timeout=0.2, retries=0, backoff=None)
    for _ in range(3):
        with pytest.raises(ReadTimeout):
            await dead.poll()
    assert dead.failures == 3 and dead.available
