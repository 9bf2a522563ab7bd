"""Register rules: decrease/rollover/exchange, running away, stopped, tariffs, reverse, clock."""

from __future__ import annotations

from amigate.config import VeeSettings
from amigate.domain import Anomaly, Severity
from amigate.vee.context import MICRO, MeterData
from amigate.vee.registry import rule, runs

__all__ = ["TARIFFS", "TOTALS", "register_limit_kwh"]

#: Total registers that must never go down (import, export).
TOTALS = ("1.8.0", "2.8.0")
#: A power sample stands for the load this long when samples are sparser than reads.
_HOLD_S = 3600
#: Tariff registers (sharp, peak, flat, valley) that must add up to 1.8.0.
TARIFFS = ("1.8.1", "1.8.2", "1.8.3", "1.8.4")


def _kwh(micro: float) -> str:
    return str(round(micro / MICRO, 6))


def register_limit_kwh(data: MeterData, cfg: VeeSettings, seconds: int) -> float:
    """The most a register can plausibly advance in ``seconds`` (kWh, meter side).

    Rated voltage × maximum current × phases × elapsed hours × ``running_away_multiple``
    (飞走: the terminal's ERC29 test, AFN04 F59).
    """
    f = data.facts
    return f.un_v * f.imax_a * f.phases * seconds / 3600 / 1000 * cfg.running_away_multiple


def _exchanged(data: MeterData, channel: str, t0: int, t1: int) -> bool:
    for event in data.events:
        if event.kind != "meter_exchange":
            continue
        subject = event.subject or event.evidence.get("channel")
        if subject not in (None, channel):
            continue
        start = int(event.start.timestamp())
        end = int(event.end.timestamp()) if event.end is not None else start
        if start <= t1 and end >= t0 - 3600:
            return True
    return False


@rule("register_decrease")
def register_decrease(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """A total register that went down: a meter exchange, a rollover, or 倒走 (NEM12 18).

    A stored ``meter_exchange`` event over the decrease explains it; a wrap at the
    register capacity whose implied usage is plausible is a rollover; anything
    else is a ``register_decrease``.
    """
    out: list[Anomaly] = []
    capacity = data.facts.register_capacity
    for channel in TOTALS:
        reads = data.registers.get(channel)
        if reads is None:
            continue
        ts, vs = reads.ts, reads.value
        steps = data.deltas(channel)[0]
        if not steps or min(steps) >= 0:
            continue  # never went down
        for i in range(1, len(ts)):
            if vs[i] >= vs[i - 1] or ts[i] <= data.since:
                continue
            t0, t1 = ts[i - 1], ts[i]
            evidence = {"channel": channel, "previous": _kwh(vs[i - 1]), "value": _kwh(vs[i])}
            if _exchanged(data, channel, t0, t1):
                kind, severity = "meter_exchange", Severity.INFO
            elif capacity is not None and _plausible_wrap(data, cfg, capacity, vs[i - 1], vs[i],
                                                          t1 - t0):  # fmt: skip
                kind, severity = "register_rollover", Severity.INFO
                evidence["capacity"] = str(capacity)
            else:
                kind, severity = "register_decrease", Severity.WARNING
            out.append(data.anomaly(kind, t0, t1, severity, evidence, subject=channel))
    return out


def _plausible_wrap(
    data: MeterData, cfg: VeeSettings, capacity: object, previous: int, value: int, seconds: int
) -> bool:
    cap = int(float(str(capacity)) * MICRO)
    if not 0 <= value < cap or previous >= cap:
        return False
    wrapped = cap - previous + value
    return wrapped <= round(register_limit_kwh(data, cfg, seconds) * MICRO)


@rule("running_away")
def running_away(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """A register advancing faster than the meter's rating allows (飞走)."""
    reads = data.registers.get("1.8.0")
    if reads is None:
        return []
    out: list[Anomaly] = []
    ts, vs = reads.ts, reads.value
    per_second = register_limit_kwh(data, cfg, 1) * MICRO
    steps, gaps = data.deltas("1.8.0")
    if not steps or max(steps) <= per_second * min(gaps) * 0.999:
        return []  # even the largest step is under the limit for the shortest gap
    for i in range(1, len(ts)):
        delta = vs[i] - vs[i - 1]
        if delta <= 0 or delta <= per_second * (ts[i] - ts[i - 1]) or ts[i] <= data.since:
            continue
        limit = round(register_limit_kwh(data, cfg, ts[i] - ts[i - 1]) * MICRO)
        if delta > limit:
            out.append(data.anomaly(
                "running_away", ts[i - 1], ts[i], Severity.CRITICAL,
                {"channel": "1.8.0", "delta_kwh": _kwh(delta), "limit_kwh": _kwh(limit)},
                subject="1.8.0",
            ))  # fmt: skip
    return out


@rule("stopped")
def stopped(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """The import register stands still while active power says energy flowed (停走).

    The energy the power samples imply over each run of unchanged reads is
    compared with ``stopped_kwh`` (China Southern Grid terminal default 0.1 kWh).
    """
    reads = data.registers.get("1.8.0")
    if reads is None or 0 not in data.deltas("1.8.0")[0]:
        return []  # the register always moved
    power = data.samples.get("1.7.0")
    if power is None or not power.ts:
        return []
    ts, vs = reads.ts, reads.value
    flags = [False] * len(ts)
    expected = [0.0] * len(ts)
    p_ts, p_v = power.ts, power.value
    scale = data.facts.power_scale / (data.facts.ct * data.facts.pt) / MICRO
    j = 0
    for i in range(1, len(ts)):
        if vs[i] != vs[i - 1]:
            continue
        t0, t1 = ts[i - 1], ts[i]
        while j < len(p_ts) and p_ts[j] < t0:
            j += 1
        k, total, n = j, 0, 0
        while k < len(p_ts) and p_ts[k] <= t1:
            total += p_v[k]
            n += 1
            k += 1
        if not n and 0 < j <= len(p_ts) and t0 - p_ts[j - 1] <= _HOLD_S and t1 - t0 <= _HOLD_S:
            total, n = p_v[j - 1], 1  # samples sparser than reads: the last one holds
        if n and n >= (t1 - t0) // _HOLD_S:  # the load was seen throughout (not an outage)
            kw = max(0.0, total / n * scale)
            flags[i] = True
            expected[i] = kw * (t1 - t0) / 3600
    out: list[Anomaly] = []
    for first, last in runs(flags):
        energy = round(sum(expected[first:last + 1]), 6)
        if energy >= cfg.stopped_kwh and ts[last] > data.since:
            out.append(data.anomaly(
                "stopped", ts[first - 1], ts[last], Severity.CRITICAL,
                {"channel": "1.8.0", "register": _kwh(vs[last]),
                 "expected_kwh": round(energy, 4)}, subject="1.8.0",
            ))  # fmt: skip
    return out


@rule("tariff_imbalance")
def tariff_imbalance(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Tariff registers that do not add up to the total register (示值不平)."""
    total = data.registers.get("1.8.0")
    parts = [data.registers[c] for c in TARIFFS if c in data.registers]
    if total is None or not parts:
        return []
    totals = dict(zip(total.ts, total.value, strict=True))
    maps = [dict(zip(p.ts, p.value, strict=True)) for p in parts[1:]]
    tolerance = cfg.tariff_tolerance_kwh * MICRO
    capacity = data.facts.register_capacity
    cap = 0 if capacity is None else int(capacity * MICRO)
    times: list[int] = []
    flags: list[bool] = []
    diffs: list[int] = []
    for t, first_part in zip(parts[0].ts, parts[0].value, strict=True):  # the daily freezes
        v = totals.get(t)
        values = [m.get(t) for m in maps]
        if v is None or None in values:
            continue
        diff = v - first_part - sum(x for x in values if x is not None)
        if cap:  # the total wraps at the capacity on its own
            diff = (diff + cap // 2) % cap - cap // 2
        times.append(t)
        flags.append(abs(diff) > tolerance)
        diffs.append(diff)
    out: list[Anomaly] = []
    for first, last in runs(flags):
        if times[last] < data.since:
            continue
        worst = max(diffs[first:last + 1], key=abs)
        out.append(data.anomaly(
            "tariff_imbalance", times[first], times[last], Severity.WARNING,
            {"channel": "1.8.0", "difference_kwh": _kwh(worst), "tariffs": len(parts)},
            subject="1.8.0",
        ))  # fmt: skip
    return out


@rule("reverse_energy")
def reverse_energy(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Export energy registered on a site without generation (NEM12 39; 反向有功示值 > 0)."""
    reads = data.registers.get("2.8.0")
    if reads is None or data.facts.has_generation:
        return []
    ts, vs = reads.ts, reads.value
    floor = cfg.reverse_min_kwh * MICRO
    flags = [False] + [vs[i] - vs[i - 1] > floor for i in range(1, len(ts))]
    out: list[Anomaly] = []
    for first, last in runs(flags):
        if ts[last] <= data.since:
            continue
        out.append(data.anomaly(
            "reverse_energy", ts[first - 1], ts[last], Severity.WARNING,
            {"channel": "2.8.0", "export_kwh": _kwh(vs[last] - vs[first - 1])}, subject="2.8.0",
        ))  # fmt: skip
    return out


@rule("clock_offset")
def clock_offset(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Clock checks whose offset exceeds ``clock_tolerance_s`` (时钟超差; NEM12 80/81)."""
    checks = data.clock
    if checks is None:
        return []
    limit = cfg.clock_tolerance_s * 1000
    flags = [abs(v) > limit for v in checks.value]
    out: list[Anomaly] = []
    for first, last in runs(flags):
        if checks.ts[last] < data.since:
            continue
        worst = max(checks.value[first:last + 1], key=abs)
        out.append(data.anomaly(
            "clock_offset", checks.ts[first], checks.ts[last], Severity.WARNING,
            {"offset_s": worst / 1000, "threshold_s": cfg.clock_tolerance_s,
             "checks": last - first + 1},
        ))  # fmt: skip
    return out
