"""Validation scenarios with ground truth: areas of simulated meters and the faults injected.

A scenario file (``simulators/vee-eval.toml``) describes transformer areas
(an area-total meter and its customers, single- and three-phase) and faults on
known meters at known times. :func:`generate` turns it into what collection
would have stored (register reads, per-phase samples, clock checks, meter
identities) using the simulator's load shapes, plus the ground truth: which
anomalies each fault must raise, and which it may raise as a consequence.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from amigate.errors import ConfigError

__all__ = ["FAULT_KINDS", "AreaSpec", "FaultSpec", "Truth", "TruthKey", "VeeScenario", "Window"]

#: ``(("meter", address) | ("area", name), anomaly kind)``.
TruthKey = tuple[tuple[str, str], str]
Window = tuple[datetime, datetime]

#: Per fault kind: the anomaly kinds it must raise on its meter and on its area,
#: and the kinds it may also raise there (consequences, not false alarms).
FAULT_KINDS: dict[str, dict[str, frozenset[str]]] = {
    "bypass_theft": {
        "meter": frozenset({"theft_suspected", "low_usage"}), "area": frozenset({"line_loss_high"}),
        "meter_allowed": frozenset(), "area_allowed": frozenset(),
    },
    "reversed_ct": {
        "meter": frozenset({"reversed_polarity"}), "area": frozenset(),
        "meter_allowed": frozenset({"low_usage", "theft_suspected"}),
        "area_allowed": frozenset({"line_loss_high"}),
    },
    "stopped_register": {
        "meter": frozenset({"stopped"}), "area": frozenset(),
        "meter_allowed": frozenset({"low_usage", "zero_consumption", "theft_suspected"}),
        "area_allowed": frozenset({"line_loss_high"}),
    },
    "voltage_loss": {
        "meter": frozenset({"voltage_loss"}), "area": frozenset(),
        "meter_allowed": frozenset({"low_usage", "theft_suspected"}),
        "area_allowed": frozenset({"line_loss_high"}),
    },
    "clock_drift": {
        "meter": frozenset({"clock_offset"}), "area": frozenset(),
        "meter_allowed": frozenset(), "area_allowed": frozenset(),
    },
    "spike": {
        "meter": frozenset({"spike"}), "area": frozenset(),
        "meter_allowed": frozenset({"high_usage"}), "area_allowed": frozenset(),
    },
    "outage": {
        "meter": frozenset({"missing_interval"}), "area": frozenset(),
        "meter_allowed": frozenset({"low_usage"}),
        "area_allowed": frozenset({"line_loss_not_computable"}),
    },
    "meter_exchange": {
        "meter": frozenset({"meter_exchange"}), "area": frozenset(),
        "meter_allowed": frozenset({"missing_interval"}), "area_allowed": frozenset(),
    },
    "rollover": {
        "meter": frozenset({"register_rollover"}), "area": frozenset(),
        "meter_allowed": frozenset(), "area_allowed": frozenset(),
    },
}  # fmt: skip
_THREE_PHASE_FAULTS = {"reversed_ct", "voltage_loss"}


@dataclass(frozen=True, kw_only=True)
class AreaSpec:
    """A transformer area: an area-total meter and its customers.

    Attributes:
        name: the area's name.
        customers: customer meters.
        three_phase: how many of them are three-phase CT meters (the last ones).
        kw: peak load of a single-phase customer (three-phase: ``three_phase_kw``).
        three_phase_kw: peak load of a three-phase customer.
        loss: technical line loss of the area (share of the supply).
        kind: load profile (``residential``, ``commercial``, ``industrial``).
    """

    name: str
    customers: int = 8
    three_phase: int = 2
    kw: float = 3.0
    three_phase_kw: float = 12.0
    loss: float = 0.03
    kind: str = "residential"


@dataclass(frozen=True, kw_only=True)
class FaultSpec:
    """A fault on one customer meter.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        area: the area's name.
        meter: the customer's index in the area (0-based).
        start_day: when it starts, in days after the scenario start.
        hours: how long it lasts.
        params: kind-specific values (``share``, ``drift_s_per_day``, ``kwh``, ``capacity``).
    """

    kind: str
    area: str
    meter: int
    start_day: float
    hours: float = 24.0
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class VeeScenario:
    """A validation scenario: when, how long, which areas, which faults."""

    start: datetime
    days: int = 42
    eval_days: int = 14
    interval_minutes: int = 15
    seed: int = 7
    areas: tuple[AreaSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()

    @property
    def eval_start(self) -> datetime:
        """Validation covers the last ``eval_days``; the days before are history."""
        return self.start + timedelta(days=self.days - self.eval_days)

    @property
    def end(self) -> datetime:
        """The end of the scenario."""
        return self.start + timedelta(days=self.days)

    @classmethod
    def load(cls, path: str | Path) -> VeeScenario:
        """Read a scenario file.

        Raises:
            ConfigError: unreadable file, unknown keys or kinds, bad values.
        """
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"validation scenario {path}: {exc}") from exc
        return cls.from_mapping(raw, where=str(path))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str = "scenario") -> VeeScenario:
        """Build a scenario from its TOML tables.

        Raises:
            ConfigError: unknown keys or kinds, bad values.
        """
        try:
            head = dict(raw.get("scenario", {}))
            start = datetime.fromisoformat(str(head.pop("start")))
            if start.tzinfo is None:
                raise ValueError("scenario.start needs a timezone")
            areas = tuple(AreaSpec(**a) for a in raw.get("areas", ()))
            faults = tuple(
                FaultSpec(kind=f["kind"], area=f["area"], meter=int(f["meter"]),
                          start_day=float(f["start_day"]), hours=float(f.get("hours", 24)),
                          params={k: float(v) for k, v in f.get("params", {}).items()})
                for f in raw.get("faults", ())
            )  # fmt: skip
            scenario = cls(start=start, areas=areas, faults=faults, **head)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"validation scenario {where}: {exc}") from exc
        scenario.check()
        return scenario

    def check(self) -> None:
        """Check that faults name known kinds, areas and meters.

        Raises:
            ConfigError: a fault does not fit the scenario.
        """
        names = {a.name: a for a in self.areas}
        if len(names) != len(self.areas):
            raise ConfigError("validation scenario: area names must be unique")
        if not 0 < self.eval_days < self.days:
            raise ConfigError("validation scenario: eval_days must be within 1..days-1")
        for f in self.faults:
            area = names.get(f.area)
            if f.kind not in FAULT_KINDS:
                raise ConfigError(f"validation scenario: unknown fault kind {f.kind!r}")
            if area is None or not 0 <= f.meter < area.customers:
                raise ConfigError(f"validation scenario: fault {f.kind} names no meter "
                                  f"{f.meter} in area {f.area!r}")  # fmt: skip
            three = f.meter >= area.customers - area.three_phase
            if f.kind in _THREE_PHASE_FAULTS and not three:
                raise ConfigError(f"validation scenario: {f.kind} needs a three-phase meter")

    def subset(self, areas: set[str]) -> VeeScenario:
        """The same scenario with only the named areas (and their faults)."""
        return replace(self, areas=tuple(a for a in self.areas if a.name in areas),
                       faults=tuple(f for f in self.faults if f.area in areas))  # fmt: skip

    def window(self, fault: FaultSpec) -> Window:
        """When a fault is active."""
        start = self.start + timedelta(days=fault.start_day)
        return start, start + timedelta(hours=max(fault.hours, self.interval_minutes / 60))

    def scaled(self, *, days: int, eval_days: int) -> VeeScenario:
        """The same areas and faults over a shorter time (faults keep their place from the end)."""
        shift = self.days - days
        faults = tuple(replace(f, start_day=f.start_day - shift) for f in self.faults)
        return replace(self, days=days, eval_days=eval_days, faults=faults)


@dataclass
class Truth:
    """What the scenario's faults must and may raise, and when.

    Keys are ``(target, kind)`` with target ``("meter", address)`` or ``("area", name)``;
    values are the fault windows ``(start, end)`` the anomaly must overlap.
    """

    expected: dict[TruthKey, list[Window]] = field(default_factory=dict)
    allowed: dict[TruthKey, list[Window]] = field(default_factory=dict)
    clean_meters: set[str] = field(default_factory=set)
    clean_areas: set[str] = field(default_factory=set)
