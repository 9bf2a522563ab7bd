"""Per-phase rules from samples, at the meter-side default thresholds."""

from __future__ import annotations

from amigate.config import VeeSettings
from amigate.domain import Anomaly
from amigate.storage.vee_queries import PointColumns
from amigate.vee.context import LazySamples
from amigate.vee.registry import RULES
from tests.vee.builders import data, facts, points

CFG = VeeSettings()
THREE = facts(phases=3)  # Un 220 V, Ib 5 A: 0.5 % Ib = 0.025 A, 5 % Ib = 0.25 A


def _three(u: tuple[float, float, float], i: tuple[float, float, float], n: int = 2,
           p: tuple[float, float, float] | None = None) -> dict[str, PointColumns]:  # fmt: skip
    out = {}
    for k, (uc, ic, pc) in enumerate((("32.7.0", "31.7.0", "21.7.0"),
                                      ("52.7.0", "51.7.0", "41.7.0"),
                                      ("72.7.0", "71.7.0", "61.7.0"))):  # fmt: skip
        out[uc] = points([u[k]] * n)
        out[ic] = points([i[k]] * n)
        if p is not None:
            out[pc] = points([p[k]] * n)
    return out


def _kinds(found: list[Anomaly]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.subject) for a in found]


def test_voltage_loss_edge() -> None:
    # 78 % of 220 V = 171.6 V
    found = RULES["phase_loss"](data(THREE, samples=_three((220, 220, 171.5), (2, 2, 2))), CFG)
    assert _kinds(found) == [("voltage_loss", "L3")]
    assert not RULES["phase_loss"](data(THREE, samples=_three((220, 220, 171.6), (2, 2, 2))), CFG)
    # no current through the phase: not a voltage loss
    found = RULES["phase_loss"](data(THREE, samples=_three((220, 220, 150), (2, 2, 0.025))), CFG)
    assert ("voltage_loss", "L3") not in _kinds(found)


def test_phase_break_needs_low_voltage_no_current_and_a_live_phase() -> None:
    found = RULES["phase_loss"](data(THREE, samples=_three((220, 131.9, 220), (2, 0.02, 2))), CFG)
    assert _kinds(found) == [("phase_break", "L2")]
    assert not RULES["phase_loss"](data(THREE, samples=_three((220, 132, 220), (2, 0, 2))), CFG)
    outage = data(THREE, samples=_three((0, 0, 0), (0, 0, 0)))
    assert not RULES["phase_loss"](outage, CFG)


def test_current_loss_while_another_phase_carries_load() -> None:
    found = RULES["phase_loss"](data(THREE, samples=_three((220, 220, 220), (2, 0.025, 2))), CFG)
    assert _kinds(found) == [("current_loss", "L2")]
    assert not RULES["phase_loss"](data(THREE, samples=_three((220, 220, 220), (2, 0.026, 2))),
                                   CFG)  # fmt: skip
    idle = data(THREE, samples=_three((220, 220, 220), (0.25, 0, 0.25)))  # others not > 5 % Ib
    assert not RULES["phase_loss"](idle, CFG)


def test_minimum_samples_for_persistence() -> None:
    cfg = VeeSettings(phase_min_samples=3)
    d = data(THREE, samples=_three((220, 220, 100), (2, 2, 2), n=2))
    assert not RULES["phase_loss"](d, cfg)
    d = data(THREE, samples=_three((220, 220, 100), (2, 2, 2), n=3))
    assert _kinds(RULES["phase_loss"](d, cfg)) == [("voltage_loss", "L3")]


def test_voltage_and_current_imbalance_edges() -> None:
    # (max - min) / max > 30 %; all phases above the voltage-loss threshold
    ok = data(THREE, samples=_three((250, 220, 176), (2, 2, 2)))  # 29.6 %
    assert not RULES["imbalance"](ok, CFG)
    high = data(THREE, samples=_three((252, 220, 176), (2, 2, 2)))  # 30.2 %
    assert _kinds(RULES["imbalance"](high, CFG)) == [("voltage_imbalance", None)]
    cur = data(THREE, samples=_three((220, 220, 220), (10, 7, 6.9)))
    assert _kinds(RULES["imbalance"](cur, CFG)) == [("current_imbalance", None)]
    assert not RULES["imbalance"](data(THREE, samples=_three((220, 220, 220), (10, 7, 7))), CFG)


def test_reversed_polarity_per_phase() -> None:
    # 0.5 % of 220 V × 5 A = 5.5 W
    d = data(THREE, samples=_three((220, 220, 220), (2, 2, 2), p=(0.4, 0.4, -0.0056)))
    assert _kinds(RULES["reversed_polarity"](d, CFG)) == [("reversed_polarity", "L3")]
    d = data(THREE, samples=_three((220, 220, 220), (2, 2, 2), p=(0.4, 0.4, -0.0055)))
    assert not RULES["reversed_polarity"](d, CFG)
    solar = facts(phases=3, has_generation=True)
    d = data(solar, samples=_three((220, 220, 220), (2, 2, 2), p=(0.4, 0.4, -1)))
    assert not RULES["reversed_polarity"](d, CFG)


def test_demand_over_contract_capacity() -> None:
    f = facts(contract_kw=10.0)
    d = data(f, samples={"1.7.0": points([9.0, 10.01, 12.0, 9.0])})
    (found,) = RULES["demand_over_contract"](d, CFG)
    assert found.evidence == {"max_kw": 12.0, "contract_kw": 10.0}
    assert not RULES["demand_over_contract"](data(f, samples={"1.7.0": points([10.0])}), CFG)
    assert not RULES["demand_over_contract"](data(samples={"1.7.0": points([99.0])}), CFG)


def test_samples_are_read_only_when_a_rule_may_fire() -> None:
    loads: list[int] = []
    series = _three((220, 220, 220), (2, 2, 2), p=(0.4, 0.4, 0.4))

    def load() -> dict[str, PointColumns]:
        loads.append(1)
        return series

    stats = {c: (len(s.value), min(s.value), max(s.value)) for c, s in series.items()}
    lazy = LazySamples(stats, load)
    d = data(THREE, samples=lazy)
    for name in ("phase_loss", "reversed_polarity", "demand_over_contract"):
        assert not RULES[name](d, CFG)
    assert loads == []  # the ranges showed nothing could trigger
    assert "32.7.0" in lazy and "99.9.9" not in lazy and len(lazy) == 9
    assert not RULES["imbalance"](d, CFG)  # current imbalance cannot be ruled out by ranges
    assert loads == [1]
    assert lazy["32.7.0"] is series["32.7.0"]
    assert loads == [1]  # read once
