"""Per-phase rules from U, I, P samples: loss of voltage or current, phase break,
imbalance, reversed polarity, and demand over contract capacity.

Thresholds are the meter-side defaults of Q/GDW 1354 / DL/T 698 meters
(docs/vee.md): 失压 U < 78 % Un with I > 0.5 % Ib; 断相 U < 60 % Un with
I < 0.5 % Ib; 失流 U > 70 % Un, I < 0.5 % Ib while another phase carries more
than 5 % Ib; imbalance above 30 %; reverse power above 0.5 % of Un·Ib.
Samples are primary values, so Un and Ib are scaled by the PT and CT ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from amigate.config import VeeSettings
from amigate.domain import Anomaly, Severity
from amigate.vee.context import MICRO, MeterData
from amigate.vee.registry import rule, runs

__all__ = ["PHASES"]

#: (name, voltage, current, active power) channels of each phase.
PHASES = (
    ("L1", "32.7.0", "31.7.0", "21.7.0"),
    ("L2", "52.7.0", "51.7.0", "41.7.0"),
    ("L3", "72.7.0", "71.7.0", "61.7.0"),
)


def _aligned(data: MeterData, channels: Sequence[str]) -> tuple[list[int], list[list[int]]] | None:
    """The sample times common to ``channels`` and each channel's values at them."""
    series = [data.samples.get(c) for c in channels]
    if any(s is None or not s.ts for s in series):
        return None
    present = [s for s in series if s is not None]
    first = present[0]
    if all(s.ts == first.ts for s in present):
        return first.ts, [s.value for s in present]
    common = sorted(set(first.ts).intersection(*(set(s.ts) for s in present[1:])))
    maps = [dict(zip(s.ts, s.value, strict=True)) for s in present]
    return common, [[m[t] for t in common] for m in maps]


def _phase_data(data: MeterData) -> tuple[list[int], list[list[int]], list[list[int]]] | None:
    phases = PHASES[: data.facts.phases]
    channels = [p[1] for p in phases] + [p[2] for p in phases]
    aligned = _aligned(data, channels)
    if aligned is None:
        return None
    ts, cols = aligned
    n = len(phases)
    return ts, cols[:n], cols[n:]


def _emit(
    data: MeterData,
    cfg: VeeSettings,
    kind: str,
    severity: Severity,
    ts: list[int],
    flags: list[bool],
    subject: str | None,
    evidence: Callable[[int, int], dict[str, Any]],
) -> list[Anomaly]:
    out: list[Anomaly] = []
    for first, last in runs(flags, cfg.phase_min_samples):
        if ts[last] < data.since:
            continue
        out.append(data.anomaly(kind, ts[first], ts[last], severity, evidence(first, last),
                                subject=subject))  # fmt: skip
    return out


def _volts(values: list[int], i: int) -> float:
    return round(values[i] / MICRO, 3)


@rule("phase_loss")
def phase_loss(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Voltage loss (失压), phase break (断相) and current loss (失流) per phase."""
    f = data.facts
    un, ib = f.un_v * f.pt * MICRO, f.ib_a * f.ct * MICRO
    if not _may_lose(data, cfg, un, ib):
        return []
    found = _phase_data(data)
    if found is None:
        return []
    ts, volts, amps = found
    no_current, load = cfg.no_current_ratio * ib, cfg.load_current_ratio * ib
    lost_v, broken_v, live_v = cfg.voltage_loss_ratio * un, cfg.phase_break_ratio * un, (
        cfg.current_loss_voltage_ratio * un
    )
    three = f.phases == 3
    out: list[Anomaly] = []
    for p, (name, _u, _i, _p) in enumerate(PHASES[: f.phases]):
        u, i = volts[p], amps[p]
        others_live = [
            any(volts[q][k] >= broken_v for q in range(len(volts)) if q != p)
            for k in range(len(ts))
        ] if three else [False] * len(ts)  # fmt: skip
        others_load = [
            any(amps[q][k] > load for q in range(len(amps)) if q != p) for k in range(len(ts))
        ] if three else [False] * len(ts)  # fmt: skip
        loss = [u[k] < lost_v and i[k] > no_current for k in range(len(ts))]
        brk = [u[k] < broken_v and i[k] <= no_current and others_live[k] for k in range(len(ts))]
        cur = [u[k] > live_v and i[k] <= no_current and others_load[k] for k in range(len(ts))]
        for kind, flags in (("voltage_loss", loss), ("phase_break", brk), ("current_loss", cur)):
            out += _emit(data, cfg, kind, Severity.CRITICAL, ts, flags, name,
                         _phase_evidence(name, u, i, f.un_v * f.pt))
    return out


def _may_lose(data: MeterData, cfg: VeeSettings, un: float, ib: float) -> bool:
    """Whether any phase ever went under the loss voltage or the no-current level."""
    for _name, u, i, _p in PHASES[: data.facts.phases]:
        volts, amps = data.sample_range(u), data.sample_range(i)
        if volts is None or amps is None:
            continue
        if volts[0] < cfg.voltage_loss_ratio * un or amps[0] <= cfg.no_current_ratio * ib:
            return True
    return False


def _phase_evidence(
    name: str, u: list[int], i: list[int], rated: float
) -> Callable[[int, int], dict[str, Any]]:
    def evidence(first: int, _last: int) -> dict[str, Any]:
        return {"phase": name, "voltage": _volts(u, first), "current": _volts(i, first),
                "rated_voltage": rated}  # fmt: skip

    return evidence


def _spread(values: Sequence[int]) -> float:
    high = max(values)
    return (high - min(values)) / high if high > 0 else 0.0


@rule("imbalance")
def imbalance(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Voltage or current imbalance (max − min) / max between phases of a three-phase meter.

    Judged only while no phase is lost or broken, so that one fault gives one anomaly.
    """
    if data.facts.phases != 3:
        return []
    found = _phase_data(data)
    if found is None:
        return []
    ts, volts, amps = found
    f = data.facts
    un, ib = f.un_v * f.pt * MICRO, f.ib_a * f.ct * MICRO
    lost_v, no_current, load = cfg.voltage_loss_ratio * un, cfg.no_current_ratio * ib, (
        cfg.load_current_ratio * ib
    )
    v_at = [[v[k] for v in volts] for k in range(len(ts))]
    i_at = [[i[k] for i in amps] for k in range(len(ts))]
    v_flags = [min(v) >= lost_v and _spread(v) > cfg.voltage_imbalance for v in v_at]
    i_flags = [
        min(v) >= lost_v and min(i) > no_current and max(i) > load
        and _spread(i) > cfg.current_imbalance
        for v, i in zip(v_at, i_at, strict=True)
    ]  # fmt: skip
    out = _emit(data, cfg, "voltage_imbalance", Severity.WARNING, ts, v_flags, None,
                lambda a, _b: {"voltages": [round(x / MICRO, 3) for x in v_at[a]]})
    out += _emit(data, cfg, "current_imbalance", Severity.WARNING, ts, i_flags, None,
                 lambda a, _b: {"currents": [round(x / MICRO, 3) for x in i_at[a]]})
    return out  # fmt: skip


@rule("reversed_polarity")
def reversed_polarity(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """A phase's active power flowing backwards on a site without generation (电流反极性)."""
    if data.facts.has_generation:
        return []
    f = data.facts
    base_kw = f.un_v * f.pt * f.ib_a * f.ct / 1000
    limit = -cfg.reverse_power_ratio * base_kw / f.power_scale * MICRO
    out: list[Anomaly] = []
    for name, _u, _i, p_channel in PHASES[: f.phases]:
        if f.phases == 1 and p_channel not in data.samples:
            p_channel = "1.7.0"
        low = data.sample_range(p_channel)
        if low is None or low[0] >= limit:
            continue  # never negative enough
        power = data.samples[p_channel]
        values = power.value
        flags = [v < limit for v in values]
        out += _emit(data, cfg, "reversed_polarity", Severity.CRITICAL, power.ts, flags, name,
                     _power_evidence(name, values, f.power_scale))
    return out


def _power_evidence(
    name: str, values: list[int], scale: float
) -> Callable[[int, int], dict[str, Any]]:
    def evidence(first: int, _last: int) -> dict[str, Any]:
        return {"phase": name, "power_kw": round(values[first] * scale / MICRO, 4)}

    return evidence


@rule("demand_over_contract")
def demand_over_contract(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Total active power above contract capacity × ``demand_contract_factor`` (需量超容)."""
    contract = data.facts.contract_kw
    if contract is None:
        return []
    limit = contract * cfg.demand_contract_factor / data.facts.power_scale * MICRO
    high = data.sample_range("1.7.0")
    if high is None or high[1] <= limit:
        return []
    power = data.samples["1.7.0"]
    flags = [v > limit for v in power.value]
    scale = data.facts.power_scale / MICRO
    return _emit(
        data, cfg, "demand_over_contract", Severity.WARNING, power.ts, flags, None,
        lambda a, b: {"max_kw": round(max(power.value[a:b + 1]) * scale, 4),
                      "contract_kw": contract},
    )  # fmt: skip
