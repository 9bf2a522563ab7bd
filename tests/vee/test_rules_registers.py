"""Register rules: decrease, rollover, exchange, running away, stopped, tariffs, reverse, clock."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from amigate.config import VeeSettings
from amigate.domain import Anomaly, Severity
from amigate.storage.vee_queries import PointColumns
from amigate.vee.registry import RULES
from tests.vee.builders import STEP, T0, data, facts, points

CFG = VeeSettings()


def _kinds(found: list[Anomaly]) -> list[str]:
    return [a.kind for a in found]


def test_register_decrease_is_flagged() -> None:
    d = data(registers={"1.8.0": points([100.0, 100.5, 99.0, 99.5])})
    (found,) = RULES["register_decrease"](d, CFG)
    assert (found.kind, found.severity) == ("register_decrease", Severity.WARNING)
    assert found.evidence["previous"] == "100.5"
    assert not RULES["register_decrease"](data(registers={"1.8.0": points([1.0, 1.0, 2.0])}), CFG)


def test_rollover_when_the_wrap_is_plausible() -> None:
    f = facts(register_capacity=Decimal(1000000))
    d = data(f, registers={"1.8.0": points([999999.5, 0.3])})
    assert _kinds(RULES["register_decrease"](d, CFG)) == ["register_rollover"]
    # 0.8 kWh of wrap is plausible in 15 min; a wrap implying 500 kWh is not (rated 220 V × 60 A)
    d = data(f, registers={"1.8.0": points([999999.5, 499.5])})
    assert _kinds(RULES["register_decrease"](d, CFG)) == ["register_decrease"]
    d = data(facts(), registers={"1.8.0": points([999999.5, 0.3])})  # capacity unknown
    assert _kinds(RULES["register_decrease"](d, CFG)) == ["register_decrease"]


def test_meter_exchange_explains_a_decrease() -> None:
    event = Anomaly(kind="meter_exchange", start=datetime.fromtimestamp(T0, UTC),
                    end=datetime.fromtimestamp(T0 + STEP, UTC), severity=Severity.INFO,
                    meter_id=1, evidence={"channel": "1.8.0"})  # fmt: skip
    d = data(registers={"1.8.0": points([5000.0, 1.0])}, events=[event])
    (found,) = RULES["register_decrease"](d, CFG)
    assert (found.kind, found.subject) == ("meter_exchange", "1.8.0")
    other = Anomaly(kind="meter_exchange", start=datetime.fromtimestamp(T0 + 86400 * 3, UTC),
                    severity=Severity.INFO, meter_id=1, evidence={"channel": "1.8.0"})
    d = data(registers={"1.8.0": points([5000.0, 1.0])}, events=[other])
    assert _kinds(RULES["register_decrease"](d, CFG)) == ["register_decrease"]


def test_running_away_at_the_edge() -> None:
    # 220 V × 60 A × 1 phase × 0.25 h × 1.2 = 3.96 kWh per 15 min
    assert _kinds(RULES["running_away"](data(registers={"1.8.0": points([10, 13.97])}), CFG)) == [
        "running_away"
    ]
    assert not RULES["running_away"](data(registers={"1.8.0": points([10, 13.96])}), CFG)
    three = facts(phases=3)
    assert not RULES["running_away"](data(three, registers={"1.8.0": points([10, 13.97])}), CFG)


def test_stopped_register_with_load() -> None:
    reads = points([50.0, 50.0, 50.0])
    # 0.2 kW over 30 min = 0.1 kWh expected: exactly the threshold
    d = data(registers={"1.8.0": reads}, samples={"1.7.0": points([0.2, 0.2, 0.2])})
    (found,) = RULES["stopped"](d, CFG)
    assert found.evidence["expected_kwh"] == 0.1
    d = data(registers={"1.8.0": reads}, samples={"1.7.0": points([0.19, 0.19, 0.19])})
    assert not RULES["stopped"](d, CFG)
    moving = points([50.0, 50.05, 50.1])
    d = data(registers={"1.8.0": moving}, samples={"1.7.0": points([0.2, 0.2, 0.2])})
    assert not RULES["stopped"](d, CFG)


def test_stopped_with_sparse_samples_but_not_across_an_outage() -> None:
    reads = points([50.0] * 9)  # two hours unchanged, read every 15 min
    hourly = PointColumns(ts=[T0, T0 + 3600, T0 + 7200], value=[100_000, 100_000, 100_000])
    (found,) = RULES["stopped"](data(registers={"1.8.0": reads}, samples={"1.7.0": hourly}), CFG)
    assert found.evidence["expected_kwh"] == 0.2
    # a 6-hour gap between two unchanged reads with no sample inside: the supply was off
    outage = PointColumns(ts=[T0, T0 + 6 * 3600], value=[50_000_000, 50_000_000])
    power = PointColumns(ts=[T0, T0 + 6 * 3600], value=[1_000_000, 1_000_000])
    assert not RULES["stopped"](data(registers={"1.8.0": outage}, samples={"1.7.0": power}), CFG)


def test_stopped_uses_power_in_watts_and_primary_scaling() -> None:
    f = facts(power_scale=0.001, ct=10.0)
    reads = points([50.0, 50.0, 50.0])
    # samples are primary W: 1900 W primary = 0.19 kW on the meter's side of a 10:1 CT
    d = data(f, registers={"1.8.0": reads}, samples={"1.7.0": points([1900] * 3)})
    assert not RULES["stopped"](d, CFG)
    d = data(f, registers={"1.8.0": reads}, samples={"1.7.0": points([2000] * 3)})
    assert _kinds(RULES["stopped"](d, CFG)) == ["stopped"]


def test_tariff_imbalance_at_the_edge() -> None:
    total = points([100.0, 110.0])
    tariffs = {f"1.8.{k}": points([25.0, 27.5]) for k in range(1, 5)}
    assert not RULES["tariff_imbalance"](data(registers={"1.8.0": total, **tariffs}), CFG)
    tariffs["1.8.4"] = points([25.0, 27.45])  # off by 0.05: within tolerance
    assert not RULES["tariff_imbalance"](data(registers={"1.8.0": total, **tariffs}), CFG)
    tariffs["1.8.4"] = points([25.0, 27.44])
    (found,) = RULES["tariff_imbalance"](data(registers={"1.8.0": total, **tariffs}), CFG)
    assert found.evidence["difference_kwh"] == "0.06"


def test_reverse_energy_only_without_generation() -> None:
    export = points([3.0, 3.0, 3.2])
    (found,) = RULES["reverse_energy"](data(registers={"2.8.0": export}), CFG)
    assert found.evidence["export_kwh"] == "0.2"
    assert not RULES["reverse_energy"](data(registers={"2.8.0": points([3.0, 3.0, 3.0])}), CFG)
    solar = facts(has_generation=True)
    assert not RULES["reverse_energy"](data(solar, registers={"2.8.0": export}), CFG)


def test_clock_offset_beyond_tolerance() -> None:
    checks = PointColumns(ts=[T0, T0 + 86400, T0 + 2 * 86400], value=[59_000, 60_000, -61_000])
    (found,) = RULES["clock_offset"](data(clock=checks), CFG)
    assert found.evidence["offset_s"] == -61.0
    assert found.start.timestamp() == T0 + 2 * 86400
