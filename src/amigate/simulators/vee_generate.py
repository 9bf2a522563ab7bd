"""Generate what collection would store for a validation scenario, faults included.

Load comes from the simulator's :class:`~amigate.simulators.load_shape.LoadShape`
(evaluated at each interval's midpoint) and is split over phases with
:func:`~amigate.simulators.load_shape.phase_split`. Every customer meter reads
its import register at each interval boundary (a DL/T 645 ``XXXXXX.XX``
register: truncated to 0.01 kWh, wrapping at 1,000,000), its tariff and export
registers at local midnight (the daily freeze), per-phase samples every hour,
and its clock once a day. The area-total meter reads the customers' true load
plus the area's technical loss through a 200/5 CT.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from amigate.domain import ClockCheck, Meter, MeterRole, Protocol, RegisterRead, Sample, Source
from amigate.simulators.load_shape import LoadShape, TouSchedule, phase_split, voltage_wobble
from amigate.simulators.vee_scenario import AreaSpec, FaultSpec, VeeScenario

__all__ = ["CAPACITY", "MeterPlan", "MeterSeries", "plan", "simulate_area"]

#: A DL/T 645 energy register (XXXXXX.XX) wraps at this many kWh.
CAPACITY = Decimal(1_000_000)
_CENT = Decimal("0.01")
_SINGLE, _THREE = "dlt645-2007-single-phase", "dlt645-2007-three-phase"
_UN = 220.0
_PF = 0.95
_TARIFF_SHARES = (0.1, 0.3, 0.4, 0.2)


@dataclass(frozen=True)
class MeterPlan:
    """One simulated meter: its stored identity, load and faults."""

    meter: Meter
    phases: int
    shape: LoadShape | None
    faults: tuple[FaultSpec, ...] = ()


@dataclass
class MeterSeries:
    """What collection stores for one meter."""

    reads: list[RegisterRead] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    daily: list[RegisterRead] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    clock: list[ClockCheck] = field(default_factory=list)
    true_kwh: list[float] = field(default_factory=list)


def _address(area: int, index: int) -> str:
    return f"{area + 1:04d}{index:08d}"


def plan(scenario: VeeScenario) -> list[tuple[AreaSpec, MeterPlan, list[MeterPlan]]]:
    """The meters of each area: its area-total meter and its customers with their faults."""
    out = []
    for a, area in enumerate(scenario.areas):
        total = Meter(address=_address(a, 0), protocol=Protocol.DLT645_2007, model=_THREE,
                      bus=f"vee-{area.name}", ct_ratio=Decimal(40), transformer_area=area.name,
                      role=MeterRole.AREA_TOTAL)  # fmt: skip
        customers = []
        for i in range(area.customers):
            three = i >= area.customers - area.three_phase
            meter = Meter(address=_address(a, i + 1), protocol=Protocol.DLT645_2007,
                          model=_THREE if three else _SINGLE, bus=f"vee-{area.name}",
                          ct_ratio=Decimal(20 if three else 1), transformer_area=area.name)
            shape = LoadShape(kind=area.kind, kw=Decimal(str(area.three_phase_kw if three
                                                               else area.kw)),
                              seed=scenario.seed * 1000 + a * 100 + i)  # fmt: skip
            faults = tuple(f for f in scenario.faults if f.area == area.name and f.meter == i)
            customers.append(MeterPlan(meter, 3 if three else 1, shape, faults))
        out.append((area, MeterPlan(total, 3, None), customers))
    return out


def _window(scenario: VeeScenario, fault: FaultSpec) -> tuple[int, int]:
    per_day = 1440 // scenario.interval_minutes
    first = round(fault.start_day * per_day)
    return first, first + max(1, round(fault.hours * 60 / scenario.interval_minutes))


def _slots(scenario: VeeScenario) -> Iterator[tuple[int, datetime]]:
    step = timedelta(minutes=scenario.interval_minutes)
    for k in range(scenario.days * 1440 // scenario.interval_minutes):
        yield k, scenario.start + k * step


def simulate_area(
    scenario: VeeScenario,
    area: AreaSpec,
    total: MeterPlan,
    customers: list[MeterPlan],
    ids: dict[str, int],
) -> list[MeterSeries]:
    """Simulate an area: the customers first, then the area-total meter from their true load.

    Args:
        scenario: the scenario.
        area: the area.
        total: the area-total meter.
        customers: the customer meters.
        ids: stored meter ids by address.

    Returns:
        The series of the customers, then of the area-total meter.
    """
    out = [_simulate(scenario, p, ids[p.meter.address]) for p in customers]
    slots = len(out[0].true_kwh)
    supply = [sum(s.true_kwh[k] for s in out) / (1 - area.loss) for k in range(slots)]
    out.append(_simulate(scenario, total, ids[total.meter.address], supply=supply))
    return out


def _floor(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT, rounding=ROUND_FLOOR)


def _simulate(
    scenario: VeeScenario, p: MeterPlan, meter_id: int, *, supply: list[float] | None = None
) -> MeterSeries:
    step_h = scenario.interval_minutes / 60
    ratio = float(p.meter.ct_ratio * p.meter.pt_ratio)
    split = phase_split(p.phases)
    windows = {f.kind: (_window(scenario, f), f) for f in p.faults}
    tou = TouSchedule()
    half = timedelta(minutes=scenario.interval_minutes / 2)
    series = MeterSeries()
    seed = int(p.meter.address)
    # registered energy per slot (secondary kWh) and the per-phase measurement factors
    registered: list[float] = []
    tariffs: list[int] = []
    measured: list[tuple[float, ...]] = []
    volts: list[tuple[float, ...]] = []
    for k, start in _slots(scenario):
        local_mid = start + half  # the scenario's start carries the site's UTC offset
        if supply is not None:
            true = supply[k]
        else:
            assert p.shape is not None
            true = p.shape.power_w(local_mid) / 1000 * step_h
        factors = [1.0] * p.phases
        u = [_UN * (1 + voltage_wobble(seed, k, ph)) for ph in range(p.phases)]
        frozen = False
        for kind, ((first, last), fault) in windows.items():
            if not first <= k < last:
                continue
            if kind == "bypass_theft":
                factors = [1 - fault.params.get("share", 0.8)] * p.phases
            elif kind == "outage":
                true = 0.0
            elif kind == "spike" and k == first:
                true += fault.params.get("kwh", 3.2)
            elif kind == "stopped_register":
                frozen = True
            elif kind == "voltage_loss":
                u[1] = _UN * fault.params.get("ratio", 0.5)
                factors[1] = u[1] / _UN
            elif kind == "reversed_ct":
                factors[2] = -1.0
        series.true_kwh.append(true)
        phase_kwh = [true * s * f for s, f in zip(split, factors, strict=True)]
        registered.append(0.0 if frozen else max(0.0, sum(phase_kwh)) / ratio)
        tariffs.append(tou.tariff_at(start) - 1)
        measured.append(tuple(e / step_h for e in phase_kwh))
        volts.append(tuple(u))
    _registers(scenario, p, meter_id, windows, registered, tariffs, series)
    _samples(scenario, p, meter_id, windows, measured, volts, series)
    _clock(scenario, meter_id, windows, series)
    return series


def _registers(
    scenario: VeeScenario,
    p: MeterPlan,
    meter_id: int,
    windows: dict[str, tuple[tuple[int, int], FaultSpec]],
    registered: list[float],
    tariffs: list[int],
    series: MeterSeries,
) -> None:
    initial = 1000.0 + int(p.meter.address) % 7919
    if "rollover" in windows:
        (first, _), _fault = windows["rollover"]
        initial = float(CAPACITY) - sum(registered[:first]) - 0.3
    exchange = windows["meter_exchange"][0][0] if "meter_exchange" in windows else None
    outage = windows["outage"][0] if "outage" in windows else (0, 0)
    cum = initial
    parts = [initial * s for s in _TARIFF_SHARES]
    identity = p.meter.address
    step = timedelta(minutes=scenario.interval_minutes)
    first_minute = scenario.start.hour * 60 + scenario.start.minute
    for j in range(len(registered) + 1):
        at = scenario.start + j * step + timedelta(seconds=5)
        if j and j - 1 == exchange:
            cum, parts = registered[j - 1], [0.0] * 4
            parts[tariffs[j - 1]] = registered[j - 1]
            identity = p.meter.address + "-new"
        elif j:
            cum += registered[j - 1]
            parts[tariffs[j - 1]] += registered[j - 1]
        if outage[0] < j < outage[1]:
            continue
        value = _floor(cum) % CAPACITY
        series.reads.append(RegisterRead(meter_id=meter_id, channel="1.8.0", read_at=at,
                                         value=value, collected_at=at, source=Source.POLL))
        series.identities.append(identity)
        if (first_minute + j * scenario.interval_minutes) % 1440 == 0:  # local midnight
            for t, part in enumerate(parts):
                series.daily.append(RegisterRead(
                    meter_id=meter_id, channel=f"1.8.{t + 1}", read_at=at,
                    value=_floor(part) % CAPACITY, collected_at=at, source=Source.DAILY_FREEZE,
                ))  # fmt: skip
            series.daily.append(RegisterRead(meter_id=meter_id, channel="2.8.0", read_at=at,
                                             value=Decimal(0), collected_at=at,
                                             source=Source.DAILY_FREEZE))  # fmt: skip


def _samples(
    scenario: VeeScenario,
    p: MeterPlan,
    meter_id: int,
    windows: dict[str, tuple[tuple[int, int], FaultSpec]],
    measured: list[tuple[float, ...]],
    volts: list[tuple[float, ...]],
    series: MeterSeries,
) -> None:
    per_hour = 60 // scenario.interval_minutes
    outage = windows["outage"][0] if "outage" in windows else (0, 0)
    step = timedelta(minutes=scenario.interval_minutes)
    for k in range(0, len(measured), per_hour):
        if outage[0] < k < outage[1]:
            continue
        at = scenario.start + k * step + timedelta(seconds=5)
        kw, u = measured[k], volts[k]
        values: list[tuple[str, float]] = []
        names = (("32.7.0", "31.7.0", "21.7.0"), ("52.7.0", "51.7.0", "41.7.0"),
                 ("72.7.0", "71.7.0", "61.7.0"))  # fmt: skip
        for ph in range(p.phases):
            amps = abs(kw[ph]) * 1000 / (u[ph] * _PF) if u[ph] > 0 else 0.0
            values += [(names[ph][0], u[ph]), (names[ph][1], amps)]
            if p.phases == 3:
                values.append((names[ph][2], kw[ph]))
        values.append(("1.7.0", sum(kw)))
        series.samples += [
            Sample(meter_id=meter_id, channel=c, at=at, value=Decimal(repr(round(v, 3))))
            for c, v in values
        ]


def _clock(
    scenario: VeeScenario,
    meter_id: int,
    windows: dict[str, tuple[tuple[int, int], FaultSpec]],
    series: MeterSeries,
) -> None:
    drift = windows.get("clock_drift")
    for day in range(scenario.days):
        at = scenario.start + timedelta(days=day, hours=12)
        offset = 3.0 * math.sin(meter_id * 7.0 + day)  # within any tolerance
        if drift is not None:
            fault = drift[1]
            since = day - fault.start_day
            if since >= 0:
                offset += fault.params.get("drift_s_per_day", 20.0) * since
        series.clock.append(ClockCheck(meter_id=meter_id, checked_at=at, offset_s=offset))
