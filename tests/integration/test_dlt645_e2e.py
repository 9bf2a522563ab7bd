"""Simulator and driver end to end, over a real pseudo-terminal and loopback TCP."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.codecs import Dlt645Version, build_read_request
from amigate.drivers import Dlt645Client
from amigate.errors import ChecksumError, DeviceRejected, ReadTimeout
from amigate.meter_models import load_models
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
from amigate.transports import Transport, open_transport

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 meter local time (UTC+8)
HOME, SHOP, OLD = "000000000001", "000000000101", "000000009701"
ENERGY, ENERGY_BLOCK, POWER = 0x00010000, 0x0001FF00, 0x02030000
CONSTANT = {"kind": "constant", "kw": "1.2", "noise": 0}


@dataclass
class Fleet:
    bus: VirtualBus
    clock: ManualClock
    transport: Transport
    client: Dlt645Client

    def meter(self, address: str) -> object:
        return self.bus.meters[address]

    def inject(self, address: str, **fault: object) -> None:
        self.bus.meters[address].faults.add(Fault(**fault))  # type: ignore[arg-type]


def _bus(clock: ManualClock, meters: tuple[MeterSpec, ...] | None = None) -> VirtualBus:
    spec = BusSpec(
        name="test",
        meters=meters
        or (
            MeterSpec(address=HOME, model="dlt645-2007-single-phase", load=CONSTANT,
                      initial_kwh=Decimal("1000")),
            MeterSpec(address="000000000002", model="dlt645-2007-single-phase", load=CONSTANT),
            MeterSpec(address=SHOP, model="dlt645-2007-three-phase",
                      load={"kind": "commercial", "kw": 15, "pf": "0.9"}),
            MeterSpec(address=OLD, model="dlt645-1997-single-phase", load=CONSTANT),
        ),
    )  # fmt: skip
    return build_bus(spec, models=load_models(), clock=clock, history_days=3)


@pytest.fixture(params=["tcp", "pty"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    clock = ManualClock(T0)
    bus = _bus(clock)
    if request.param == "tcp":
        server = await serve_tcp(bus)
        port = server.sockets[0].getsockname()[1]
        transport = await open_transport(f"tcp://127.0.0.1:{port}")
    else:
        pty = PtyServer(bus)
        await pty.start()
        transport = await open_transport(f"serial://{pty.path}?baud=2400&parity=E")
    client = Dlt645Client(transport, slack=0.1, quiet=0.3, retries=1)
    try:
        yield Fleet(bus, clock, transport, client)
    finally:
        await transport.aclose()
        if request.param == "tcp":
            server.close()
            await server.wait_closed()
        else:
            await pty.aclose()


def _value(response: object, channel: str) -> object:
    return next(v.value for v in response.values if v.channel == channel)  # type: ignore[attr-defined]


async def test_energy_block_total_is_the_exact_sum_of_tariffs(fleet: Fleet) -> None:
    total = await fleet.client.read(SHOP, ENERGY)
    block = await fleet.client.read(SHOP, ENERGY_BLOCK)
    values = [v.value for v in block.values]
    assert len(values) == 5
    assert values[0] == total.values[0].value == sum(values[1:])
    assert values[0] == fleet.bus.meters[SHOP].physics.import_kwh()[0]


async def test_instantaneous_values_agree_with_each_other(fleet: Fleet) -> None:
    for phase, (v_di, i_di, p_di) in enumerate(
        ((0x02010100, 0x02020100, 0x02030100), (0x02010200, 0x02020200, 0x02030200))
    ):
        u = (await fleet.client.read(SHOP, v_di)).values[0].value
        i = (await fleet.client.read(SHOP, i_di)).values[0].value
        p = (await fleet.client.read(SHOP, p_di)).values[0].value
        pf = (await fleet.client.read(SHOP, 0x02060000)).values[0].value
        assert isinstance(u, Decimal) and isinstance(i, Decimal) and isinstance(p, Decimal)
        assert isinstance(pf, Decimal)
        assert float(u * i * pf) / 1000 == pytest.approx(float(p), rel=2e-3), phase


async def test_energy_increment_matches_power_over_an_hour(fleet: Fleet) -> None:
    before = (await fleet.client.read(HOME, ENERGY)).values[0].value
    power = (await fleet.client.read(HOME, POWER)).values[0].value
    fleet.clock.advance(hours=1)
    after = (await fleet.client.read(HOME, ENERGY)).values[0].value
    assert power == Decimal("1.2000")
    assert after - before == Decimal("1.20")  # type: ignore[operator]


async def test_1997_meter_answers_on_the_same_bus(fleet: Fleet) -> None:
    old = Dlt645Client(fleet.transport, version=Dlt645Version.V1997, slack=0.1, quiet=0.3)
    voltage = (await old.read(OLD, 0xB611)).values[0].value
    assert isinstance(voltage, Decimal) and voltage == voltage.to_integral_value()
    assert (await old.read(OLD, 0x9010)).values[0].unit == "kWh"


async def test_no_reply_times_out_within_the_computed_timeout(fleet: Fleet) -> None:
    fleet.inject("000000000002", kind=FaultKind.NO_REPLY)
    client = Dlt645Client(fleet.transport, slack=0.1, quiet=0.3, retries=0)
    limit = client.read_timeout(build_read_request("000000000002", ENERGY), ENERGY)
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match="meter 000000000002"):
        await client.read("000000000002", ENERGY)
    elapsed = time.monotonic() - started
    assert limit * 0.95 <= elapsed <= limit + 0.3
    # The next meter on the bus still reads fine.
    assert (await client.read(HOME, ENERGY)).address == HOME


async def test_a_late_reply_is_not_mistaken_for_the_next_answer(fleet: Fleet) -> None:
    client = Dlt645Client(fleet.transport, slack=0.1, quiet=0.3, retries=0)
    limit = client.read_timeout(build_read_request(HOME, POWER), POWER)
    fleet.inject(HOME, kind=FaultKind.LATE_REPLY, delay=limit + 0.1, count=1, di=POWER)
    with pytest.raises(ReadTimeout):
        await client.read(HOME, POWER)
    # The late power reply arrives while we ask for energy: it must be discarded.
    energy = await client.read(HOME, ENERGY)
    assert energy.di == ENERGY
    assert energy.values[0].unit == "kWh"
    assert client.stats.late_bytes > 0


async def test_a_flipped_byte_once_is_retried(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.FLIP_BYTE, count=1, byte=-4, bit=2)
    response = await fleet.client.read(HOME, ENERGY)
    assert response.values[0].value == fleet.bus.meters[HOME].physics.import_kwh()[0]
    assert fleet.client.stats.retries == 1
    assert fleet.client.stats.frame_errors >= 1


async def test_a_flipped_byte_every_time_is_a_checksum_error(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.FLIP_BYTE, byte=-4, bit=2)
    with pytest.raises(ChecksumError, match="meter 000000000001"):
        await fleet.client.read(HOME, ENERGY)


async def test_a_wrong_checksum_is_a_checksum_error(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.BAD_CHECKSUM)
    with pytest.raises(ChecksumError) as info:
        await fleet.client.read(HOME, ENERGY)
    assert info.value.received == (info.value.expected + 1) & 0xFF
    assert (await fleet.client.read(SHOP, ENERGY)).address == SHOP


async def test_an_abnormal_reply_is_rejected_with_its_reason(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.ABNORMAL, code=0x04, di=ENERGY)
    with pytest.raises(DeviceRejected) as info:
        await fleet.client.read(HOME, ENERGY)
    assert info.value.code == 0x04
    assert info.value.reasons == ("password error or unauthorised",)
    assert (await fleet.client.read(HOME, POWER)).di == POWER


async def test_unsupported_di_is_no_requested_data(fleet: Fleet) -> None:
    with pytest.raises(DeviceRejected, match="no requested data"):
        await fleet.client.read(HOME, 0x02010200)  # phase B voltage on a single-phase meter


async def test_a_clock_jump_shows_in_the_clock_read(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.CLOCK_JUMP, seconds=-3600, after=60)
    fleet.clock.advance(120)
    time_of_day = (await fleet.client.read(HOME, 0x04000102)).values[0].value
    assert time_of_day == "11:02:00"  # 12:02 local, one hour behind


async def test_time_sync_sets_every_clock_within_what_meters_accept(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.CLOCK_JUMP, seconds=240)
    fleet.inject(SHOP, kind=FaultKind.CLOCK_JUMP, seconds=600)  # beyond the 5 min meters take
    await fleet.client.time_sync(datetime(2026, 11, 22, 12, 0, 0))
    assert (await fleet.client.read(HOME, 0x04000102)).values[0].value == "12:00:00"
    assert (await fleet.client.read(SHOP, 0x04000102)).values[0].value == "12:10:00"
    # One time set a day: a second one the same day is ignored.
    fleet.inject(HOME, kind=FaultKind.CLOCK_JUMP, seconds=60)
    await fleet.client.time_sync(datetime(2026, 11, 22, 12, 0, 0))
    assert (await fleet.client.read(HOME, 0x04000102)).values[0].value == "12:01:00"


async def test_register_running_backwards_and_stopped(fleet: Fleet) -> None:
    fleet.inject(HOME, kind=FaultKind.REGISTER_BACKWARDS)
    fleet.inject("000000000002", kind=FaultKind.REGISTER_STOPPED)
    home0 = (await fleet.client.read(HOME, ENERGY)).values[0].value
    other0 = (await fleet.client.read("000000000002", ENERGY)).values[0].value
    fleet.clock.advance(hours=2)
    home1 = (await fleet.client.read(HOME, ENERGY)).values[0].value
    other1 = (await fleet.client.read("000000000002", ENERGY)).values[0].value
    assert home1 == home0 - Decimal("2.40")  # type: ignore[operator]
    assert other1 == other0
    assert (await fleet.client.read("000000000002", POWER)).values[0].value == Decimal("1.2")


async def test_daily_freezes_and_load_profile_backfill(fleet: Fleet) -> None:
    stamp = (await fleet.client.read(HOME, 0x05060001)).values[0].value
    frozen = (await fleet.client.read(HOME, 0x05060101)).values
    assert stamp == datetime(2026, 11, 22, 0, 0)
    assert frozen[0].value == sum(v.value for v in frozen[1:])  # type: ignore[misc]
    day = await fleet.client.read(HOME, 0x06000001, blocks=96, since=datetime(2026, 11, 21))
    stamps = [v.value for v in day.values if v.name == "load record time"]
    energy = [v.value for v in day.values if v.channel == "1.8.0"]
    assert len(stamps) == 96 and stamps[0] == datetime(2026, 11, 21, 0, 0)
    assert stamps[-1] == datetime(2026, 11, 21, 23, 45)
    assert fleet.client.stats.followups > 0
    # 1.2 kW constant: every quarter hour adds 0.30 kWh.
    steps = {b - a for a, b in itertools.pairwise(energy)}  # type: ignore[operator]
    assert steps == {Decimal("0.30")}


async def test_read_address_with_the_only_meter_on_the_bus() -> None:
    clock = ManualClock(T0)
    bus = _bus(clock, (MeterSpec(address=SHOP, model="dlt645-2007-three-phase"),))
    server = await serve_tcp(bus)
    port = server.sockets[0].getsockname()[1]
    transport = await open_transport(f"tcp://127.0.0.1:{port}")
    try:
        client = Dlt645Client(transport, slack=0.1, quiet=0.3)
        assert await client.read_address() == SHOP
        assert (await client.read("AAAAAAAAAAAA", ENERGY)).address == SHOP
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


# --- the command line -------------------------------------------------------------------

SCENARIO = """
[scenario]
history_days = 1

[[bus]]
name = "cli"
listen = "tcp://127.0.0.1:0"

[[bus.meters]]
address = "000000000001"
model = "dlt645-2007-single-phase"
load = { kind = "constant", kw = 2, noise = 0 }

[[bus.meters]]
address = "000000000002"
model = "dlt645-2007-three-phase"

[[bus.meters]]
address = "000000000003"
model = "dlt645-2007-single-phase"
faults = [{ kind = "abnormal", code = 2, di = "00010000" }]
"""


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = tmp_path_factory.mktemp("sim") / "cli.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amigate.cli", "sim", "dlt645", "--scenario", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("tcp://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        assert line.split()[1:] == ["cli", "3", "meters"]
        yield line.split()[0]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def _amigate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amigate.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_read_json(sim_url: str) -> None:
    result = _amigate(
        "read", "dlt645", "--url", sim_url, "--address", "000000000001",
        "--di", "00010000", "--di", "02030000", "--di", "04000401", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["address"], r["di"], r["unit"]) for r in rows] == [
        ("000000000001", "00010000", "kWh"),
        ("000000000001", "02030000", "kW"),
        ("000000000001", "04000401", None),
    ]
    assert rows[0]["channel"] == "1.8.0" and Decimal(rows[0]["value"]) > 0
    assert rows[1]["value"] == "2.0000" and rows[1]["name"] == "total active power"
    assert rows[2]["value"] == "000000000001"


def test_cli_read_text_prints_value_and_unit(sim_url: str) -> None:
    result = _amigate(
        "read", "dlt645", "--url", sim_url, "--address", "000000000002", "--di", "0201FF00"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("000000000002 0201FF00 ") and line.endswith(" V") for line in lines)


def test_cli_unknown_meter_is_a_one_line_timeout_error(sim_url: str) -> None:
    result = _amigate(
        "read", "dlt645", "--url", sim_url, "--address", "000000000099", "--di", "00010000",
        "--retries", "0", "--timeout", "0.5",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("amigate: error: meter 000000000099, DI 00010000")
    assert "no reply within 0.50 s" in result.stderr


def test_cli_abnormal_reply_names_the_reason(sim_url: str) -> None:
    result = _amigate(
        "read", "dlt645", "--url", sim_url, "--address", "000000000003", "--di", "00010000"
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "amigate: error: DI 00010000: meter 000000000003 rejected the read: "
        "no requested data (error byte 0x02)"
    )


def test_cli_scan_lists_who_answers(sim_url: str, tmp_path: Path) -> None:
    listing = tmp_path / "addresses.txt"
    listing.write_text(
        "# feeder 1\n000000000001\n000000000002  # shop\n\n000000000042\n", encoding="utf-8"
    )
    result = _amigate(
        "scan", "dlt645", "--url", sim_url, "--addresses", str(listing), "--timeout", "0.5"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "000000000001 answers (ok)",
        "000000000002 answers (ok)",
        "000000000042 no answer (timeout)",
    ]
    assert "2 of 3 answered" in result.stderr


def test_cli_connection_refused_is_a_one_line_error() -> None:
    result = _amigate(
        "read", "dlt645", "--url", "tcp://127.0.0.1:1", "--address", "000000000001",
        "--di", "00010000",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("amigate: error: connect to tcp://127.0.0.1:1")


async def test_wire_time_emulation_paces_replies() -> None:
    clock = ManualClock(T0)
    bus = _bus(clock, (MeterSpec(address=HOME, model="dlt645-2007-single-phase"),))
    bus.wire_time = True
    server = await serve_tcp(bus)
    port = server.sockets[0].getsockname()[1]
    transport = await open_transport(f"tcp://127.0.0.1:{port}")
    try:
        client = Dlt645Client(transport, baud=2400, quiet=0.3)
        started = time.monotonic()
        await client.read(HOME, ENERGY_BLOCK)
        elapsed = time.monotonic() - started
        reply_bytes = 2 + 12 + 4 + 20
        assert elapsed >= reply_bytes * 11 / 2400 * 0.9
        await asyncio.sleep(0)
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


def test_every_shipped_model_is_answered_by_the_simulator() -> None:
    async def run() -> None:
        clock = ManualClock(T0)
        models = {k: m for k, m in load_models().items() if m.dlt645_version is not None}
        specs = tuple(
            MeterSpec(address=f"{n + 1:012d}", model=m.id) for n, m in enumerate(models.values())
        )
        bus = build_bus(BusSpec(name="all", meters=specs), models=models, clock=clock)
        server = await serve_tcp(bus)
        port = server.sockets[0].getsockname()[1]
        transport = await open_transport(f"tcp://127.0.0.1:{port}")
        try:
            for spec in specs:
                model = models[spec.model]
                version = Dlt645Version(model.protocol)
                client = Dlt645Client(transport, version=version, quiet=0.2)
                for point in model.points:
                    di = point.source.at(1)  # type: ignore[union-attr]
                    extra = {}
                    if point.kind == "load_profile":
                        extra = {"blocks": 1, "since": datetime(2026, 11, 22, 0, 0)}
                    response = await client.read(spec.address, di, **extra)  # type: ignore[arg-type]
                    channels = {v.channel for v in response.values}
                    if point.kind in ("clock", "identity") or point.channel.startswith("0."):
                        # dates, times and addresses carry no channel in the catalogue
                        assert all(v.value is not None for v in response.values), point
                    else:
                        assert point.channel in channels, (spec.model, point.channel, channels)
                        assert all(v.value is not None for v in response.values
                                   if v.channel == point.channel)  # fmt: skip
        finally:
            await transport.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(run())


def test_clock_is_injectable_and_history_starts_in_the_past() -> None:
    clock = ManualClock(T0)
    bus = _bus(clock)
    physics = bus.meters[HOME].physics
    bus.meters[HOME].sync(clock())
    assert len(physics.freezes) == 3  # midnights of 20, 21 and 22 November (local)
    assert len(physics.load_profile) == 3 * 96  # every quarter hour of the last 3 days
    assert physics.import_kwh()[0] == Decimal("1000.00") + Decimal("1.2") * (72)
    assert clock.advance(days=1) == T0 + timedelta(days=1)
