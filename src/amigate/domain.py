"""The data model billing depends on: meters, register reads, intervals, samples, anomalies.

Plain frozen dataclasses over the standard library. Times are timezone-aware
(stored in UTC); energy and every other measured value is an exact ``Decimal``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from amigate.errors import ReadingRejected

#: Values are stored as integers of this many decimal places (micro-units:
#: 1 µkWh = 1 mWh). Every meter register resolution we know (0.01 kWh for
#: DL/T 645 energy, 0.0001 kWh for high-resolution registers, 0.001 for
#: power factor) is a multiple of it, so sums stay exact to the last digit.
VALUE_DECIMALS = 6
_VALUE_QUANTUM = Decimal(1).scaleb(-VALUE_DECIMALS)
#: ``created_by`` of everything amigate collects or computes by itself.
SYSTEM_USER = "amigate"
MICRO_SCALE = Decimal(10) ** VALUE_DECIMALS
MAX_MICRO = 2**63 - 1  # a signed 64-bit integer, on both backends
MIN_MICRO = -(2**63)


class Quality(enum.IntEnum):
    """Quality of an interval value (IEC 61968-9 / NEM12 vocabulary, mapped in the VEE layer)."""

    ACTUAL = 0
    ESTIMATED = 1
    SUBSTITUTED = 2
    FINAL_SUBSTITUTE = 3
    MISSING = 4
    VARIABLE = 5


class Source(enum.IntEnum):
    """Where a value came from."""

    POLL = 0
    DAILY_FREEZE = 1
    LOAD_PROFILE = 2
    BACKFILL = 3
    MANUAL = 4
    ESTIMATION = 5
    IMPORT = 6


class Protocol(enum.StrEnum):
    """Meter protocols amigate speaks."""

    DLT645_2007 = "dlt645-2007"
    DLT645_1997 = "dlt645-1997"
    MODBUS = "modbus"


class MeterRole(enum.StrEnum):
    """What a meter measures in its transformer area."""

    CUSTOMER = "customer"
    AREA_TOTAL = "area-total"


class MeterStatus(enum.StrEnum):
    """Lifecycle and collection state of a meter."""

    ACTIVE = "active"
    UNAVAILABLE = "unavailable"
    RETIRED = "retired"


class AnomalyStatus(enum.StrEnum):
    """Lifecycle of an anomaly."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(enum.StrEnum):
    """How urgently an anomaly needs attention."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def require_aware(name: str, value: datetime) -> None:
    """Reject naive datetimes: a time without a zone is ambiguous on a meter clock.

    Raises:
        ReadingRejected: ``value`` has no timezone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReadingRejected(f"{name} {value.isoformat()} has no timezone; give an explicit zone")


def to_micro(value: Decimal) -> int:
    """Convert an exact decimal to integer micro-units, refusing to round.

    Raises:
        ReadingRejected: the value has more than ``VALUE_DECIMALS`` decimal places or is not finite.
    """
    try:
        scaled = value * MICRO_SCALE
        micro = int(scaled)
    except (ValueError, OverflowError):  # NaN, infinity
        raise ReadingRejected(f"value {value} is not a finite number") from None
    if not MIN_MICRO <= micro <= MAX_MICRO:
        raise ReadingRejected(f"value {value} is out of the storable range (|value| < 9.2e12)")
    if micro != scaled:
        raise ReadingRejected(
            f"value {value} has more than {VALUE_DECIMALS} decimal places; "
            "it cannot be stored exactly"
        )
    return micro


def from_micro(value: int) -> Decimal:
    """Convert integer micro-units back to an exact decimal."""
    return (Decimal(value) * _VALUE_QUANTUM).normalize() if value else Decimal(0)


@dataclass(frozen=True, kw_only=True)
class Meter:
    """A physical meter at a service point."""

    address: str
    protocol: Protocol
    model: str
    bus: str
    id: int | None = None
    service_point: str | None = None
    ct_ratio: Decimal = Decimal(1)
    pt_ratio: Decimal = Decimal(1)
    rated_voltage: Decimal | None = None
    rated_current: Decimal | None = None
    max_current: Decimal | None = None
    timezone: str = "Asia/Shanghai"
    transformer_area: str | None = None
    role: MeterRole = MeterRole.CUSTOMER
    status: MeterStatus = MeterStatus.ACTIVE

    @property
    def multiplier(self) -> Decimal:
        """The CT ratio times the PT ratio: primary = secondary × multiplier."""
        return self.ct_ratio * self.pt_ratio


@dataclass(frozen=True, kw_only=True)
class RegisterRead:
    """A cumulative register value as the meter reported it."""

    meter_id: int
    channel: str
    read_at: datetime
    value: Decimal
    collected_at: datetime
    source: Source = Source.POLL
    clock_offset_s: float | None = None

    def __post_init__(self) -> None:
        require_aware("read_at", self.read_at)
        require_aware("collected_at", self.collected_at)


@dataclass(frozen=True, kw_only=True)
class Interval:
    """Energy over the closed-open interval ``[start, end)`` of one channel.

    ``value`` is ``None`` exactly when the quality is ``MISSING``: a gap is never a zero.
    """

    meter_id: int
    channel: str
    start: datetime
    end: datetime
    value: Decimal | None
    quality: Quality = Quality.ACTUAL
    method: int | None = None
    reason_codes: tuple[str, ...] = ()
    version: int = 1
    source: Source = Source.POLL
    created_by: str = SYSTEM_USER
    comment: str | None = None

    def __post_init__(self) -> None:
        require_aware("start", self.start)
        require_aware("end", self.end)
        if self.end <= self.start:
            raise ReadingRejected(f"interval end {self.end} is not after its start {self.start}")
        if (self.value is None) != (self.quality is Quality.MISSING):
            raise ReadingRejected("an interval has no value exactly when its quality is MISSING")
        if self.version < 1:
            raise ReadingRejected(f"interval version {self.version} must be 1 or more")

    @property
    def duration(self) -> timedelta:
        """The length of the interval."""
        return self.end - self.start


@dataclass(frozen=True, kw_only=True)
class Sample:
    """An instantaneous value (voltage, current, power, power factor, frequency) at a time."""

    meter_id: int
    channel: str
    at: datetime
    value: Decimal

    def __post_init__(self) -> None:
        require_aware("at", self.at)


@dataclass(frozen=True, kw_only=True)
class ClockCheck:
    """The offset of a meter clock against the collection clock at one check.

    ``offset_s`` > 0: the meter clock is ahead. ``corrected``: the check follows a
    time sync and the offset is back under the threshold.
    """

    meter_id: int
    checked_at: datetime
    offset_s: float
    corrected: bool = False

    def __post_init__(self) -> None:
        require_aware("checked_at", self.checked_at)


@dataclass(frozen=True, kw_only=True)
class Anomaly:
    """A typed event on a meter or a transformer area, raised by a validation rule.

    ``subject`` names what within the meter or area it is about (a channel, a
    phase); with ``kind``, meter and area it identifies the condition, so that a
    condition reported again extends its stored anomaly (default: the evidence's
    ``channel``, if any).
    """

    kind: str
    start: datetime
    severity: Severity
    meter_id: int | None = None
    transformer_area: str | None = None
    subject: str | None = None
    end: datetime | None = None
    status: AnomalyStatus = AnomalyStatus.OPEN
    evidence: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class IngestResult:
    """What a bulk ingest did.

    Attributes:
        offered: rows given to the ingest.
        inserted: rows newly stored.
        conflicts: rows refused because another value is stored under their key.
    """

    offered: int
    inserted: int
    conflicts: int = 0

    def __add__(self, other: IngestResult) -> IngestResult:
        """Combine the results of two ingests."""
        return IngestResult(
            self.offered + other.offered, self.inserted + other.inserted,
            self.conflicts + other.conflicts,
        )  # fmt: skip

    @property
    def duplicates(self) -> int:
        """Rows that were already stored with the same value (replays)."""
        return self.offered - self.inserted - self.conflicts
