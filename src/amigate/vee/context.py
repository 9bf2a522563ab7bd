"""What a rule sees: one meter's facts (ratings, phases, contract) and its data in columns.

Times are epoch seconds and values integer micro-units, as stored; rules turn
them into ``datetime`` and ``Decimal`` only for the anomalies they raise.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import sub
from typing import Any
from zoneinfo import ZoneInfo

from amigate.domain import Anomaly, Meter, Quality, Severity
from amigate.meter_models import MeterModel
from amigate.meter_models.spec import PointKind
from amigate.storage.vee_queries import IntervalColumns, MeterProfile, PointColumns, VersionCell

__all__ = [
    "DAY",
    "MICRO",
    "LazySamples",
    "MeterData",
    "MeterFacts",
    "facts_for",
    "utc",
]

DAY = 86_400
#: Micro-units per unit (values are stored as integers of 1e-6).
MICRO = 1_000_000
_ACTUAL, _MISSING = int(Quality.ACTUAL), int(Quality.MISSING)


def utc(epoch: int) -> datetime:
    """An epoch-seconds time as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, kw_only=True)
class MeterFacts:
    """The metadata rules need, resolved from the meter, its model and its profile.

    Attributes:
        meter: the meter.
        phases: 1 or 3.
        un_v: rated phase voltage, secondary (V).
        ib_a: base (rated) current, secondary (A).
        imax_a: maximum current, secondary (A).
        ct: CT ratio; samples of current and power are primary (× ct, × ct·pt).
        pt: PT ratio.
        register_capacity: an energy register wraps to zero at this value (kWh), if known.
        contract_kw: contract capacity, primary kW, if known.
        has_generation: the site may export (no reverse-energy anomaly).
        power_scale: stored power samples × this = kW (0.001 for models reporting W).
        utc_offset_s: the meter's local time minus UTC, for local days.
    """

    meter: Meter
    phases: int = 1
    un_v: float = 220.0
    ib_a: float = 5.0
    imax_a: float = 60.0
    ct: float = 1.0
    pt: float = 1.0
    register_capacity: Decimal | None = None
    contract_kw: float | None = None
    has_generation: bool = False
    power_scale: float = 1.0
    utc_offset_s: int = 8 * 3600

    @property
    def meter_id(self) -> int:
        """The meter's id."""
        assert self.meter.id is not None
        return self.meter.id


def facts_for(
    meter: Meter,
    model: MeterModel | None,
    profile: MeterProfile | None,
    *,
    at: datetime,
    capacity: Decimal | None = None,
) -> MeterFacts:
    """Resolve a meter's facts: the meter row first, then its profile, then its model.

    Args:
        meter: the stored meter.
        model: its model definition (``None`` when unknown: defaults apply).
        profile: its validation profile, if stored.
        at: the time whose UTC offset gives the meter's local days.
        capacity: the register capacity the model implies, if any.

    Returns:
        The facts.
    """
    rated_v = meter.rated_voltage or (model.rated.voltage_v if model else Decimal(220))
    ib = meter.rated_current or (model.rated.current_a if model else Decimal(5))
    imax = meter.max_current or (model.rated.max_current_a if model else Decimal(60))
    phases = (profile.phases if profile and profile.phases else None) or (
        model.phases if model else 1
    )
    power_scale = 1.0
    if model is not None:
        units = {p.unit for p in model.by_kind(PointKind.INSTANTANEOUS) if p.unit in {"W", "kW"}}
        power_scale = 0.001 if units == {"W"} else 1.0
    offset = ZoneInfo(meter.timezone).utcoffset(at.replace(tzinfo=None))
    return MeterFacts(
        meter=meter, phases=phases, un_v=float(rated_v), ib_a=float(ib), imax_a=float(imax),
        ct=float(meter.ct_ratio), pt=float(meter.pt_ratio),
        register_capacity=(profile.register_capacity if profile else None) or capacity,
        contract_kw=None if profile is None or profile.contract_kw is None
        else float(profile.contract_kw),
        has_generation=bool(profile and profile.has_generation), power_scale=power_scale,
        utc_offset_s=int(offset.total_seconds()) if offset is not None else 0,
    )  # fmt: skip


class LazySamples(Mapping[str, PointColumns]):
    """A meter's sample series, read from storage the first time a rule asks for one.

    Until then only each series' count, minimum and maximum are known
    (:meth:`value_range`): rules use them to skip meters whose samples cannot
    trigger them, which is most meters.
    """

    def __init__(
        self,
        stats: Mapping[str, tuple[int, int, int]],
        load: Callable[[], Mapping[str, PointColumns]],
    ) -> None:
        """Keep the statistics and the loader (called at most once)."""
        self._stats = dict(stats)
        self._load = load
        self._series: Mapping[str, PointColumns] | None = None

    def value_range(self, channel: str) -> tuple[int, int] | None:
        """The smallest and largest value of a series, without reading it."""
        found = self._stats.get(channel)
        return None if found is None else (found[1], found[2])

    def __getitem__(self, channel: str) -> PointColumns:
        """The series of ``channel`` (reads every series of the meter the first time)."""
        if channel not in self._stats:
            raise KeyError(channel)
        if self._series is None:
            self._series = self._load()
        return self._series[channel]

    def __contains__(self, channel: object) -> bool:
        """Whether the meter has samples of ``channel`` (without reading them)."""
        return channel in self._stats

    def __iter__(self) -> Iterator[str]:
        """The channels with samples."""
        return iter(self._stats)

    def __len__(self) -> int:
        """How many channels have samples."""
        return len(self._stats)


@dataclass
class MeterData:
    """One meter's stored data over a validation window (with history before it).

    Attributes:
        facts: the meter's facts.
        since: findings must touch ``[since, until)`` (epoch seconds).
        until: end of the window (epoch seconds).
        intervals: version-1 intervals per channel.
        versions: the newest later version per channel and interval start.
        registers: register reads per channel (meter units, secondary).
        samples: instantaneous samples per channel (primary).
        clock: clock-check offsets (ms), if any.
        events: stored collection events of this meter (meter exchanges).
    """

    facts: MeterFacts
    since: int
    until: int
    intervals: Mapping[str, IntervalColumns] = field(default_factory=dict)
    versions: dict[str, dict[int, VersionCell]] = field(default_factory=dict)
    registers: Mapping[str, PointColumns] = field(default_factory=dict)
    samples: Mapping[str, PointColumns] = field(default_factory=dict)
    clock: PointColumns | None = None
    events: list[Anomaly] = field(default_factory=list)
    _daily: dict[str, dict[int, tuple[int, int, int]]] = field(default_factory=dict, repr=False)
    _slices: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict, repr=False)
    _steps: dict[str, int] = field(default_factory=dict, repr=False)
    _deltas: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict, repr=False)

    def forget(self) -> None:
        """Drop cached sums (after versions were added)."""
        self._daily.clear()

    def anomaly(
        self,
        kind: str,
        start: int,
        end: int | None,
        severity: Severity,
        evidence: dict[str, Any],
        *,
        subject: str | None = None,
    ) -> Anomaly:
        """An anomaly of this meter (times in epoch seconds)."""
        return Anomaly(
            kind=kind, start=utc(start), end=None if end is None else utc(end),
            severity=severity, meter_id=self.facts.meter_id, subject=subject,
            evidence=evidence,
        )  # fmt: skip

    def local_day(self, epoch: int) -> int:
        """The local day number (days since 1970-01-01, local) of a time."""
        return (epoch + self.facts.utc_offset_s) // DAY

    def day_start(self, day: int) -> int:
        """The epoch seconds at which local day ``day`` starts."""
        return day * DAY - self.facts.utc_offset_s

    def sample_range(self, channel: str) -> tuple[int, int] | None:
        """The smallest and largest sample of ``channel`` (None when there is none)."""
        if isinstance(self.samples, LazySamples):
            return self.samples.value_range(channel)
        series = self.samples.get(channel)
        if series is None or not series.value:
            return None
        return min(series.value), max(series.value)

    def deltas(self, channel: str) -> tuple[list[int], list[int]]:
        """Consecutive differences of a register: ``(value steps, time steps)``."""
        cached = self._deltas.get(channel)
        if cached is None:
            reads = self.registers.get(channel)
            if reads is None or len(reads.ts) < 2:
                cached = ([], [])
            else:
                cached = (list(map(sub, reads.value[1:], reads.value[:-1])),
                          list(map(sub, reads.ts[1:], reads.ts[:-1])))  # fmt: skip
            self._deltas[channel] = cached
        return cached

    def step(self, channel: str = "1.8.0") -> int:
        """The interval length of a channel (its shortest interval), in seconds."""
        cached = self._steps.get(channel)
        if cached is None:
            cols = self.intervals.get(channel)
            cached = min(cols.duration) if cols and cols.duration else 900
            self._steps[channel] = cached
        return cached

    def day_slices(self, channel: str = "1.8.0") -> list[tuple[int, int, int]]:
        """The version-1 intervals of each local day: ``(day, first index, end index)``."""
        key = "slices:" + channel
        cached = self._slices.get(key)
        if cached is not None:
            return cached
        cols = self.intervals.get(channel)
        out: list[tuple[int, int, int]] = []
        if cols is not None:
            ts, offset, i, n = cols.ts, self.facts.utc_offset_s, 0, len(cols.ts)
            while i < n:
                day = (ts[i] + offset) // DAY
                j = bisect_left(ts, (day + 1) * DAY - offset, i)
                out.append((day, i, j))
                i = j
        self._slices[key] = out
        return out

    def daily_energy(self, channel: str = "1.8.0") -> dict[int, tuple[int, int, int]]:
        """Per local day: ``(sum of known energy, intervals known, intervals missing)``.

        Uses the latest view: a later version (a gap span, an estimate, an edit)
        replaces the version-1 value; a span counts its energy on the day it starts.
        """
        cached = self._daily.get(channel)
        if cached is not None:
            return cached
        cols = self.intervals.get(channel)
        if cols is None:
            return {}
        cells = self.versions.get(channel, {})
        values, qualities = cols.value, cols.quality
        result: dict[int, tuple[int, int, int]] = {}
        for day, a, b in self.day_slices(channel):
            if cells and any(t in cells for t in cols.ts[a:b]):
                total = known = missing = 0
                for t, value, quality in zip(cols.ts[a:b], values[a:b], qualities[a:b],
                                             strict=True):  # fmt: skip
                    cell = cells.get(t)
                    if cell is not None:
                        value, quality = cell.value, cell.quality
                    if value is None or quality == _MISSING:
                        missing += 1
                    else:
                        total += value
                        known += 1
                result[day] = (total, known, missing)
                continue
            missing = qualities[a:b].count(_MISSING)
            chunk = values[a:b]
            total = sum(v for v in chunk if v is not None) if missing else sum(chunk)  # type: ignore[arg-type]
            result[day] = (total, b - a - missing, missing)
        self._daily[channel] = result
        return result
