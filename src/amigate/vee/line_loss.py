"""Transformer-area line loss (台区线损) per day, and theft suspicion from it.

Per area and local day: supply is the area-total meter's import energy, the
loss is supply minus the sum of the customer meters' import energy, and the
rate is loss / supply (latest view: estimates count, missing intervals do not).
A day is ``normal`` (rate within [``line_loss_negative``, ``line_loss_high``]),
``high``, ``negative``, or ``not_computable`` when a meter of the area lacks
intervals that day (the meters are named) or the area has no supply meter
(then the days are reported but no anomaly is raised: it is a set-up gap, not
a collection one).

A run of at least ``theft_high_days`` high days raises ``theft_suspected`` on
each customer whose consumption over the run fell by at least
``theft_drop_ratio`` against its own median day before it, with the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from amigate.config import VeeSettings
from amigate.domain import Anomaly, MeterRole, Severity
from amigate.vee.context import DAY, MICRO, MeterData, utc
from amigate.vee.registry import runs

__all__ = ["LossDay", "area_line_loss"]

_KIND = {"high": "line_loss_high", "negative": "line_loss_negative",
         "not_computable": "line_loss_not_computable"}  # fmt: skip


@dataclass(frozen=True)
class LossDay:
    """The line loss of one area on one local day.

    Attributes:
        area: the transformer area.
        day_start: epoch seconds of the local day's start.
        status: ``normal``, ``high``, ``negative`` or ``not_computable``.
        supply_kwh: the area meter's energy (None when unknown).
        consumption_kwh: the customers' energy (None when unknown).
        rate: loss / supply (None when not computable).
        missing_meters: ids of the meters whose data is incomplete that day.
    """

    area: str
    day_start: int
    status: str
    supply_kwh: float | None
    consumption_kwh: float | None
    rate: float | None
    missing_meters: tuple[int, ...] = ()


def _day_energy(member: MeterData) -> dict[int, tuple[int, int, int]]:
    return member.daily_energy("1.8.0")


def area_line_loss(
    area: str, members: Sequence[MeterData], cfg: VeeSettings
) -> tuple[list[LossDay], list[Anomaly]]:
    """Line loss of one area for each local day of the window, and the anomalies it raises.

    Args:
        area: the transformer area.
        members: every meter of the area (the area-total meter and the customers).
        cfg: thresholds.

    Returns:
        The days (oldest first) and the anomalies (area loss, theft suspicions).
    """
    if not members:
        return [], []
    ref = members[0]
    supply = [m for m in members if m.facts.meter.role is MeterRole.AREA_TOTAL]
    customers = [m for m in members if m.facts.meter.role is not MeterRole.AREA_TOTAL]
    energy = {m.facts.meter_id: _day_energy(m) for m in members}
    day_len = {m.facts.meter_id: _slots_per_day(m) for m in members}
    first, last = ref.local_day(ref.since), ref.local_day(ref.until - 1)
    days: list[LossDay] = []
    for day in range(first, last + 1):
        start = ref.day_start(day)
        if start + DAY > ref.until:
            break  # the day is not over
        missing = tuple(
            m.facts.meter_id for m in members if not _complete(energy[m.facts.meter_id].get(day),
                                                              day_len[m.facts.meter_id])
        )  # fmt: skip
        if not supply or missing:
            days.append(LossDay(area, start, "not_computable", None, None, None, missing))
            continue
        s = sum(energy[m.facts.meter_id][day][0] for m in supply) / MICRO
        c = sum(energy[m.facts.meter_id][day][0] for m in customers) / MICRO
        rate = (s - c) / s if s > 0 else None
        if rate is None:
            status = "not_computable"
        elif rate > cfg.line_loss_high:
            status = "high"
        elif rate < cfg.line_loss_negative:
            status = "negative"
        else:
            status = "normal"
        days.append(LossDay(area, start, status, round(s, 6), round(c, 6),
                            None if rate is None else round(rate, 6)))  # fmt: skip
    if not supply:
        return days, []  # no area-total meter: nothing to raise day after day
    anomalies = _loss_anomalies(area, days)
    anomalies += _theft(area, days, customers, energy, cfg)
    return days, anomalies


def _slots_per_day(member: MeterData) -> int:
    return DAY // member.step("1.8.0")


def _complete(counts: tuple[int, int, int] | None, slots: int) -> bool:
    return counts is not None and counts[2] == 0 and counts[1] >= slots


def _loss_anomalies(area: str, days: list[LossDay]) -> list[Anomaly]:
    out: list[Anomaly] = []
    for status, kind in _KIND.items():
        flags = [d.status == status for d in days]
        for first, last in runs(flags):
            chunk = days[first:last + 1]
            evidence: dict[str, object] = {
                "days": len(chunk),
                "rates": [d.rate for d in chunk],
            }
            if status == "not_computable":
                evidence["missing_meters"] = sorted({m for d in chunk for m in d.missing_meters})
            severity = Severity.INFO if status == "not_computable" else Severity.WARNING
            out.append(Anomaly(
                kind=kind, start=utc(chunk[0].day_start), end=utc(chunk[-1].day_start + DAY),
                severity=severity, transformer_area=area, evidence=evidence,
            ))  # fmt: skip
    return out


def _theft(
    area: str,
    days: list[LossDay],
    customers: Sequence[MeterData],
    energy: dict[int, dict[int, tuple[int, int, int]]],
    cfg: VeeSettings,
) -> list[Anomaly]:
    out: list[Anomaly] = []
    flags = [d.status == "high" for d in days]
    for first, last in runs(flags, cfg.theft_high_days):
        chunk = days[first:last + 1]
        for m in customers:
            mine = energy[m.facts.meter_id]
            run_days = [m.local_day(d.day_start) for d in chunk]
            before = [
                v[0] for d, v in mine.items()
                if run_days[0] - cfg.history_days <= d < run_days[0] and not v[2]
            ]  # fmt: skip
            recent = [mine[d][0] for d in run_days if d in mine]
            if len(before) < min(cfg.history_min_days, 3) or not recent:
                continue
            baseline = median(before)
            level = sum(recent) / len(recent)
            if baseline <= 0 or level > (1 - cfg.theft_drop_ratio) * baseline:
                continue
            out.append(Anomaly(
                kind="theft_suspected", start=utc(chunk[0].day_start),
                end=utc(chunk[-1].day_start + DAY), severity=Severity.CRITICAL,
                meter_id=m.facts.meter_id, transformer_area=area,
                evidence={"loss_rates": [d.rate for d in chunk],
                          "baseline_kwh_per_day": round(baseline / MICRO, 6),
                          "recent_kwh_per_day": round(level / MICRO, 6),
                          "drop": round(1 - level / baseline, 4)},
            ))  # fmt: skip
    return out
