"""Fleet configuration: loading, defaults, and errors that name the entry."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amigate.domain import MeterRole, Protocol
from amigate.errors import ConfigError
from amigate.fleet import ReadPlan, load_fleet, parse_fleet
from amigate.meter_models import MeterModel

FLEET = """
[plan.dlt645]
timeout_s = 1.5
spread_s = 20

[[bus]]
name = "feeder-1"
protocol = "dlt645-2007"
url = "tcp://127.0.0.1:4001"
plan = { retries = 2 }

[[bus.meters]]
address = "000000000001"
model = "dlt645-2007-single-phase"

[[bus.meters]]
address = "000000000101"
model = "dlt645-2007-three-phase"
ct_ratio = 40
pt_ratio = "100"
timezone = "Asia/Kolkata"
transformer_area = "TA-7"
role = "area-total"

[[bus]]
name = "rs485-a"
protocol = "modbus"
port = "/dev/ttyUSB0"
baud = 19200

[[bus.meters]]
unit_id = 3
model = "sdm630"
"""


def test_a_fleet_file_loads_with_defaults_and_overrides(
    tmp_path: Path, models: dict[str, MeterModel]
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    fleet = load_fleet(path, models)
    assert fleet.path == path
    dlt, mb = fleet.buses
    assert (dlt.name, dlt.protocol, dlt.url) == (
        "feeder-1",
        Protocol.DLT645_2007,
        "tcp://127.0.0.1:4001",
    )
    assert dlt.plan == ReadPlan(timeout_s=1.5, spread_s=20, retries=2)
    home, area = dlt.meters
    assert (home.bus, home.ct_ratio, home.multiplier) == ("feeder-1", Decimal(1), Decimal(1))
    assert home.rated_voltage == models["dlt645-2007-single-phase"].rated.voltage_v
    assert area.multiplier == Decimal(4000)
    assert (area.timezone, area.transformer_area, area.role) == (
        "Asia/Kolkata", "TA-7", MeterRole.AREA_TOTAL,
    )  # fmt: skip
    assert mb.url.startswith("serial:///dev/ttyUSB0?baud=19200&parity=N")
    assert mb.plan.timeout_s == 0.5  # the Modbus default
    (meter,) = mb.meters
    assert (meter.address, meter.protocol, meter.model) == ("3", Protocol.MODBUS, "sdm630")
    assert len(fleet.meters) == 3


def _bus(**changes: Any) -> dict[str, Any]:
    meter = {"address": "000000000001", "model": "dlt645-2007-single-phase"}
    meter.update(changes.pop("meter", {}))
    bus: dict[str, Any] = {
        "name": "b1", "protocol": "dlt645-2007", "url": "tcp://127.0.0.1:4001", "meters": [meter],
    }  # fmt: skip
    bus.update(changes)
    return bus


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "fleet: no [[bus]] entries"),
        ({"bus": [_bus(speed=1)]}, "fleet bus #1: unknown key(s) speed"),
        ({"bus": [_bus(protocol="iec62056")]}, "bus 'b1': protocol = 'iec62056' is not one of"),
        ({"bus": [_bus(url="udp://x:1")]}, "bus 'b1': transport URL 'udp://x:1'"),
        ({"bus": [_bus(port="/dev/ttyS0")]}, "bus 'b1': give either url or port"),
        ({"bus": [_bus(protocol="modbus", url="tcp://h:502")]}, "bus 'b1': Modbus URL"),
        ({"bus": [_bus(meters=[])]}, "bus 'b1': no [[bus.meters]] entries"),
        ({"bus": [_bus(meter={"address": "12"})]}, "bus 'b1' meter #1: address = '12' must be"),
        (
            {"bus": [_bus(meter={"model": "nope"})]},
            "bus 'b1' meter #1 (address 000000000001): unknown model 'nope'",
        ),
        (
            {"bus": [_bus(meter={"model": "sdm630"})]},
            "meter #1 (address 000000000001): model 'sdm630' speaks modbus, the bus dlt645-2007",
        ),
        ({"bus": [_bus(meter={"ct_ratio": -5})]}, "ct_ratio = -5 must be a positive number"),
        ({"bus": [_bus(meter={"ct_ratio": "x"})]}, "ct_ratio = 'x' is not a number"),
        ({"bus": [_bus(meter={"timezone": "Mars/Base"})]}, "timezone = 'Mars/Base' is not"),
        ({"bus": [_bus(meter={"role": "boss"})]}, "role = 'boss' is not one of customer"),
        ({"bus": [_bus(meter={"unit_id": 3})]}, "meter #1: unknown key(s) unit_id"),
        (
            {
                "bus": [
                    _bus(
                        protocol="modbus",
                        url="modbus+tcp://h:502",
                        meters=[{"unit_id": 300, "model": "sdm630"}],
                    )
                ]
            },
            "meter #1: unit_id = 300 must be an integer 1..247",
        ),
        ({"bus": [_bus(), _bus()]}, "bus #2: name 'b1' is used twice"),
        ({"bus": [_bus(), _bus(name="b2")]}, "tcp://127.0.0.1:4001 is used by more than one bus"),
        ({"bus": [_bus(plan={"retries": "2"})]}, "bus 'b1' plan: retries = '2' must be a int"),
        ({"bus": [_bus(plan={"interval_minutes": 7})]}, "interval_minutes = 7 must divide"),
        ({"plan": {"iec": {}}, "bus": [_bus()]}, "fleet [plan]: unknown key(s) iec"),
        (
            {"plan": {"dlt645": {"spread_s": 900}}, "bus": [_bus()]},
            "fleet [plan.dlt645]: spread_s = 900.0 must be >= 0 and below the interval",
        ),
    ],
)
def test_errors_name_the_entry(
    document: dict[str, Any], message: str, models: dict[str, MeterModel]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_fleet(document, models)
    assert message in str(caught.value)


def test_duplicate_addresses_on_a_bus_are_refused(models: dict[str, MeterModel]) -> None:
    bus = _bus()
    bus["meters"] = bus["meters"] * 2
    with pytest.raises(ConfigError, match="meter #2: address 000000000001 is already on this bus"):
        parse_fleet({"bus": [bus]}, models)


def test_unreadable_and_invalid_files(tmp_path: Path, models: dict[str, MeterModel]) -> None:
    with pytest.raises(ConfigError, match="cannot read fleet file"):
        load_fleet(tmp_path / "missing.toml", models)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[bus]\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_fleet(bad, models)
