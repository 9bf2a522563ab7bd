"""Load shapes and time-of-use schedules: what a simulated meter's load does over time.

Power is piecewise constant per minute and expressed in whole watts, so that
energy integrates exactly (watts × milliseconds) and a test can predict every
register to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from amigate.errors import ConfigError

# Relative demand per hour of the day (peak = 1), typical of the respective customers.
_PROFILES: dict[str, tuple[float, ...]] = {
    "residential": (
        0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.55, 0.7, 0.5, 0.4, 0.35, 0.4,
        0.45, 0.4, 0.35, 0.38, 0.5, 0.75, 0.95, 1.0, 0.9, 0.7, 0.5, 0.35,
    ),
    "commercial": (
        0.15, 0.15, 0.15, 0.15, 0.15, 0.2, 0.3, 0.6, 0.9, 1.0, 1.0, 0.95,
        0.85, 0.95, 1.0, 1.0, 0.95, 0.8, 0.5, 0.3, 0.2, 0.18, 0.16, 0.15,
    ),
    "industrial": (0.8,) * 6 + (0.95,) * 12 + (0.85,) * 6,
}  # fmt: skip
KINDS = ("constant", *_PROFILES)


def _hash_unit(seed: int, minute: int) -> float:
    """A deterministic pseudo-random number in [-1, 1] for one minute."""
    x = (minute * 2654435761 + seed * 40503 + 0x9E3779B9) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return (x & 0xFFFF) / 32767.5 - 1.0


@dataclass(frozen=True, kw_only=True)
class LoadShape:
    """Active power and power factor of one customer as a function of local time.

    Attributes:
        kind: ``constant`` or a daily profile (``residential``, ``commercial``,
            ``industrial``).
        kw: the constant power, or the profile's peak, in kW; negative means export
            (a generator or a reversed CT).
        pf: power factor (0 < pf ≤ 1).
        noise: relative per-minute variation (0.1 = ±10 %); 0 for exact tests.
        seed: makes each meter's noise different but reproducible.
    """

    kind: str = "residential"
    kw: Decimal = Decimal("2.0")
    pf: Decimal = Decimal("0.95")
    noise: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: unknown kind, or a power factor outside (0, 1].
        """
        if self.kind not in KINDS:
            raise ConfigError(f"load shape kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not Decimal(0) < self.pf <= Decimal(1):
            raise ConfigError(f"load shape pf = {self.pf} must be within (0, 1]")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"load shape noise = {self.noise} must be within [0, 1)")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, seed: int = 0) -> LoadShape:
        """Build a shape from a scenario table (``{kind = "residential", kw = 3}``).

        Raises:
            ConfigError: unknown keys or bad values.
        """
        unknown = set(table) - {"kind", "kw", "pf", "noise", "seed"}
        if unknown:
            raise ConfigError(f"load shape: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            return cls(
                kind=str(table.get("kind", "residential")),
                kw=Decimal(str(table.get("kw", "2.0"))),
                pf=Decimal(str(table.get("pf", "0.95"))),
                noise=float(table.get("noise", 0.1)),
                seed=int(table.get("seed", seed)),
            )
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ConfigError(f"load shape: {exc}") from exc

    def power_w(self, local: datetime) -> int:
        """Return the active power in whole watts for the minute containing ``local``."""
        minute = _naive_minute(local)
        base = float(self.kw) * 1000.0
        if self.kind != "constant":
            hourly = _PROFILES[self.kind]
            h = local.hour + local.minute / 60.0
            i = int(h) % 24
            frac = h - int(h)
            base *= hourly[i] + (hourly[(i + 1) % 24] - hourly[i]) * frac
        if self.noise:
            base *= 1.0 + self.noise * _hash_unit(self.seed, minute)
        return round(base)

    def pf_at(self, local: datetime) -> Decimal:
        """Return the power factor (constant per shape, kept a function for richer shapes)."""
        return self.pf


def _naive_minute(local: datetime) -> int:
    return (local.toordinal() * 1440) + local.hour * 60 + local.minute


@dataclass(frozen=True, kw_only=True)
class TouSchedule:
    """A daily time-of-use schedule: which tariff (1..n) applies from which time.

    The default is the usual 4-tariff split: 1 sharp, 2 peak, 3 flat, 4 valley.
    """

    periods: tuple[tuple[time, int], ...] = field(
        default=(
            (time(0, 0), 4),
            (time(7, 0), 3),
            (time(8, 0), 2),
            (time(11, 0), 3),
            (time(17, 0), 2),
            (time(19, 0), 1),
            (time(21, 0), 2),
            (time(22, 0), 3),
            (time(23, 0), 4),
        )
    )

    def __post_init__(self) -> None:
        """Check that periods start at midnight and are in order.

        Raises:
            ConfigError: otherwise.
        """
        starts = [start for start, _ in self.periods]
        if not starts or starts[0] != time(0, 0) or starts != sorted(set(starts)):
            raise ConfigError("tou schedule: periods must start at 00:00 and be in time order")
        if any(not 1 <= tariff <= 63 for _, tariff in self.periods):
            raise ConfigError("tou schedule: tariffs must be within 1..63")

    @classmethod
    def from_list(cls, periods: Sequence[Sequence[Any]]) -> TouSchedule:
        """Build from ``[["00:00", 4], ["07:00", 3], ...]``.

        Raises:
            ConfigError: a malformed entry.
        """
        try:
            parsed = tuple(
                (time.fromisoformat(str(start)), int(tariff)) for start, tariff in periods
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f'tou schedule: {exc} (use ["HH:MM", tariff] pairs)') from exc
        return cls(periods=parsed)

    @property
    def tariffs(self) -> int:
        """The highest tariff number used."""
        return max(tariff for _, tariff in self.periods)

    def tariff_at(self, local: datetime) -> int:
        """Return the tariff in force at ``local``."""
        now = local.time()
        current = self.periods[0][1]
        for start, tariff in self.periods:
            if start > now:
                break
            current = tariff
        return current


def phase_split(phases: int) -> tuple[float, ...]:
    """Return how a three-phase load divides between phases (slightly unbalanced)."""
    return (1.0,) if phases == 1 else (0.36, 0.33, 0.31)


def voltage_wobble(seed: int, minute: int, phase: int) -> float:
    """A small, smooth, reproducible voltage deviation (±1.5 %)."""
    return 0.015 * math.sin(minute / 37.0 + seed + 2.1 * phase)
