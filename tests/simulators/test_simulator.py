"""Simulator building blocks: load shapes, physics, faults, the bus and scenario files."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.codecs import build_read_request, decode_frame, encode_frame
from amigate.errors import ConfigError, FrameError
from amigate.meter_models import load_models
from amigate.simulators import (
    Fault,
    FaultKind,
    FaultSet,
    LoadShape,
    ManualClock,
    MeterPhysics,
    TouSchedule,
    build_buses,
    load_scenario,
)
from amigate.simulators.scenario import find_scenario

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def _physics(kw: str = "1.2", **kw_args: object) -> MeterPhysics:
    model = load_models()["dlt645-2007-single-phase"]
    shape = LoadShape(kind="constant", kw=Decimal(kw), noise=0)
    return MeterPhysics(model=model, shape=shape, start=T0, **kw_args)  # type: ignore[arg-type]


def test_tariffs_follow_the_tou_schedule_and_sum_to_the_total() -> None:
    physics = _physics()
    tou = physics.tou
    physics.advance(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))  # one whole local day
    total, *tariffs = physics.import_kwh()
    assert total == sum(tariffs) == Decimal("28.80")
    hours = dict.fromkeys(range(1, 5), 0)
    for h in range(24):
        hours[tou.tariff_at(datetime(2026, 1, 1, h))] += 1
    assert tariffs == [Decimal("1.2") * hours[t] for t in range(1, 5)]


def test_tou_schedule_validation() -> None:
    assert (
        TouSchedule.from_list([["00:00", 2], ["12:00", 1]]).tariff_at(datetime(2026, 1, 1, 13)) == 1
    )
    with pytest.raises(ConfigError, match="start at 00:00"):
        TouSchedule(periods=((time(1, 0), 1),))


def test_export_and_clock_drift() -> None:
    physics = _physics("-2.0", clock_drift_ppm=100, clock_offset_s=5)
    later = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    physics.advance(later)
    assert physics.export_kwh() == Decimal("48.00")
    assert physics.import_kwh()[0] == Decimal("0.00")
    # 5 s offset plus 100 ppm of 86400 s = 8.64 s ahead.
    assert physics.meter_time(later) == datetime(2026, 11, 23, 12, 0, 13)
    assert physics.instant(later).currents[0] < 0


def test_load_shape_is_reproducible_and_validated() -> None:
    shape = LoadShape(kind="residential", kw=Decimal(3), seed=4)
    when = datetime(2026, 11, 22, 19, 30)
    assert shape.power_w(when) == shape.power_w(when)
    assert 2000 < shape.power_w(when) < 3500
    assert shape.power_w(datetime(2026, 11, 22, 3, 0)) < 1000
    with pytest.raises(ConfigError, match="kind 'nuclear'"):
        LoadShape(kind="nuclear")
    with pytest.raises(ConfigError, match="unknown key"):
        LoadShape.from_mapping({"kw": 1, "peak": 2})


def test_fault_counts_probabilities_and_timing() -> None:
    faults = FaultSet([Fault(kind=FaultKind.NO_REPLY, count=1, di=0x00010000)])
    assert faults.plan(0x02010100, T0, T0).silent is False
    assert faults.plan(0x00010000, T0, T0).silent is True
    assert faults.plan(0x00010000, T0, T0).silent is False  # used up
    later = FaultSet([Fault(kind=FaultKind.ABNORMAL, code=4, after=60)])
    assert later.plan(None, T0, T0).abnormal_code is None
    assert later.plan(None, T0, ManualClock(T0).advance(60)).abnormal_code == 4
    with pytest.raises(ConfigError, match="kind 'melt'"):
        Fault.from_mapping({"kind": "melt"})
    with pytest.raises(ConfigError, match="probability"):
        Fault(kind=FaultKind.NO_REPLY, probability=2)


def test_bus_routes_by_address_and_unknown_addresses_stay_silent() -> None:
    clock = ManualClock(T0)
    bus = build_buses(load_scenario("demo"), clock=clock)[0]
    assert len(bus.meters) == 10
    ask = encode_frame(build_read_request("000000000002", 0x00010000))
    replies = bus.receive(ask[:7])
    assert replies == []  # half a frame: wait for the rest
    replies = bus.receive(ask[7:])
    assert len(replies) == 1 and decode_frame(replies[0].data).address == "000000000002"
    assert bus.receive(encode_frame(build_read_request("000000000077", 0x00010000))) == []


def test_wildcard_requests_collide_when_several_meters_answer() -> None:
    bus = build_buses(load_scenario("demo"), clock=ManualClock(T0))[0]
    replies = bus.receive(encode_frame(build_read_request("AAAAAAAAAAAA", 0x00010000)))
    assert len(replies) == 1
    with pytest.raises(FrameError):
        decode_frame(replies[0].data)


def test_shipped_scenarios_load() -> None:
    demo = load_scenario("demo")
    faults = load_scenario("faults")
    assert demo.buses[0].name == "feeder-1" and len(demo.buses[0].meters) == 10
    kinds = {f.kind for m in faults.buses[0].meters for f in m.faults}
    assert kinds == set(FaultKind)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[bus]]\nname='x'\n[[bus.meters]]\naddress='1'\nmodel='dlt645-2007-single-phase'\n",
         "bus #1 (x) meter #1: address '1' must be 12 decimal digits"),
        ("[[bus]]\nname='x'\n[[bus.meters]]\naddress='000000000001'\nmodel='nope'\n",
         "bus #1 (x) meter #1: unknown model 'nope'"),
        ("[[bus]]\nname='x'\nspeed=1\n", "bus #1 (x): unknown key(s) speed"),
        ("[scenario]\nseed=1\n", "no [[bus]] defined"),
        ("[[bus]]\nname='x'\n[[bus.meters]]\naddress='000000000001'\n"
         "model='dlt645-2007-single-phase'\nfaults=[{kind='melt'}]\n", "fault: kind 'melt'"),
    ],
)  # fmt: skip
def test_broken_scenarios_name_file_and_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenario(str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="shipped: demo, demo-fleet, faults"):
        find_scenario("nowhere")
