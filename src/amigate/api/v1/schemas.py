"""Response and request bodies of the v1 API, and the conversions into them.

Energies and other measured values are JSON strings holding exact decimals
(``"12.345000"``: six decimal places, the storage resolution), never floats.
Times are RFC 3339 in UTC. Request bodies refuse unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from amigate.domain import VALUE_DECIMALS, Quality, Source

#: A decimal number as a string, exact.
DecimalStr = Annotated[
    str,
    Field(pattern=r"^-?\d+(\.\d+)?$", examples=["12.345000"],
          description="exact decimal number, as a string"),
]  # fmt: skip
QualityName = Literal["actual", "estimated", "substituted", "final_substitute", "missing",
                      "variable"]  # fmt: skip
SourceName = Literal["poll", "daily_freeze", "load_profile", "backfill", "manual", "estimation",
                     "import"]  # fmt: skip
MeterId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the meter's id")]
Channel = Annotated[
    str,
    Query(pattern=r"^[0-9A-Za-z.:_\-]{1,32}$",
          description="channel code (OBIS-style): 1.8.0 is active import energy"),
]  # fmt: skip
#: Free text without control characters.
SafeText = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


def energy(micro: int) -> str:
    """Micro-units as an exact decimal string with the storage resolution."""
    return f"{Decimal(micro).scaleb(-VALUE_DECIMALS):f}"


def exact(value: Decimal) -> str:
    """An exact decimal as a string, with the storage resolution unless it has more digits."""
    quantum = Decimal(1).scaleb(-VALUE_DECIMALS)
    rounded = value.quantize(quantum)
    return f"{rounded if rounded == value else value:f}"


def quality_name(value: int) -> QualityName:
    """The API name of a stored quality."""
    return Quality(value).name.lower()  # type: ignore[return-value]


def source_name(value: int) -> SourceName:
    """The API name of a stored source."""
    return Source(value).name.lower()  # type: ignore[return-value]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeterOut(_Out):
    """A meter."""

    id: int
    address: str = Field(description="DL/T 645 address or Modbus unit id")
    protocol: str
    model: str = Field(description="meter model id")
    bus: str
    service_point: str | None
    ct_ratio: DecimalStr
    pt_ratio: DecimalStr
    multiplier: DecimalStr = Field(description="CT ratio × PT ratio: primary = secondary × this")
    timezone: str
    transformer_area: str | None
    role: str = Field(description="customer or area-total")
    status: str = Field(description="active, unavailable or retired")


class Health(_Out):
    """Collection health of a meter over the last 24 hours."""

    last_read_at: datetime | None = Field(description="the latest register read")
    window_start: datetime
    window_end: datetime
    expected_intervals: int
    actual_intervals: int = Field(description="intervals read (quality actual) in the window")
    success_rate: float = Field(ge=0, le=1, description="actual / expected intervals")


class MeterDetail(MeterOut):
    """A meter with its collection health."""

    health: Health


class IntervalOut(_Out):
    """One version of one interval."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:15:00Z",
                    "value": "2.000000", "quality": "estimated", "version": 2,
                    "source": "estimation", "method": 3, "reason_codes": ["gap"],
                    "created_by": "amigate", "comment": None,
                    "recorded_at": "2026-01-01T06:00:00Z",
                }
            ]
        },
    )  # fmt: skip

    start: datetime
    end: datetime
    value: DecimalStr | None = Field(description="energy (primary), null when missing")
    quality: QualityName
    version: int = Field(description="1 as collected; 2+ estimates, substitutes and edits")
    source: SourceName
    method: int | None = Field(description="estimation method, when estimated")
    reason_codes: list[str]
    created_by: str | None = Field(description="who made this version (null: as collected)")
    comment: str | None
    recorded_at: datetime | None = Field(description="when this version was stored (2+)")


class IntervalBlockOut(_Out):
    """Intervals back to back that differ only in value: the one at index ``i`` (from 0)
    of ``values`` starts at ``start`` + ``i`` × ``interval_s``. A gap, another length or
    any other attribute begins the next block. Expanded, the blocks of a range are the
    ``IntervalOut`` items of the same range, in order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                    "interval_s": 900, "values": ["0.120000", "0.135000", "0.098000", "0.110000"],
                    "quality": "actual", "version": 1, "source": "poll", "method": None,
                    "reason_codes": [], "created_by": None, "comment": None,
                    "recorded_at": None,
                }
            ]
        },
    )  # fmt: skip

    start: datetime = Field(description="start of the first interval")
    end: datetime = Field(description="end of the last interval")
    interval_s: int = Field(ge=1, description="length of each interval in seconds")
    values: list[DecimalStr | None] = Field(
        description="energy of each interval (primary), in start order; null in a block of "
        "quality missing"
    )
    quality: QualityName
    version: int = Field(description="1 as collected; 2+ estimates, substitutes and edits")
    source: SourceName
    method: int | None = Field(description="estimation method, when estimated")
    reason_codes: list[str]
    created_by: str | None = Field(description="who made this version (null: as collected)")
    comment: str | None
    recorded_at: datetime | None = Field(description="when this version was stored (2+)")


class BucketOut(_Out):
    """Intervals aggregated over one local hour, day or month."""

    start: datetime
    end: datetime
    value: DecimalStr = Field(description="sum of the interval values")
    intervals: int = Field(description="intervals with a value")
    missing: int = Field(description="intervals stored as missing")
    estimated: int = Field(description="intervals with a value that is not actual")
    completeness: float = Field(ge=0, le=1, description="share of the bucket covered by values")


class RegisterReadOut(_Out):
    """A cumulative register read as the meter reported it (secondary units)."""

    meter_id: int
    channel: str
    read_at: datetime
    value: DecimalStr
    collected_at: datetime
    source: SourceName
    clock_offset_s: float | None


class BoundaryReadOut(_Out):
    """A billing start or end read."""

    read_at: datetime
    value: DecimalStr


class TouOut(_Out):
    """Consumption in one time-of-use period."""

    period: str
    energy: DecimalStr
    intervals: int


class DeterminantOut(_Out):
    """Billing determinants of one meter over ``[start, end)``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "meter_id": 17, "channel": "1.8.0", "start": "2025-12-31T16:00:00Z",
                    "end": "2026-01-31T16:00:00Z", "billable": True, "reasons": [],
                    "start_read": {"read_at": "2025-12-31T16:00:05Z", "value": "5000.000000"},
                    "end_read": {"read_at": "2026-01-31T16:00:05Z", "value": "5149.850000"},
                    "multiplier": "10.000000", "consumption": "1498.500000",
                    "register_delta": "1498.500000", "difference": "0.000000",
                    "tou": [
                        {"period": "尖", "energy": "124.000000", "intervals": 248},
                        {"period": "峰", "energy": "315.500000", "intervals": 620},
                        {"period": "平", "energy": "496.000000", "intervals": 992},
                        {"period": "谷", "energy": "563.000000", "intervals": 1116},
                    ],
                    "max_demand": "24.000000", "max_demand_at": "2026-01-01T00:00:00Z",
                    "intervals": 2976, "missing_intervals": 0, "estimated_intervals": 0,
                    "estimated_energy": "0.000000", "completeness": 1.0, "open_anomalies": [],
                }
            ]
        },
    )  # fmt: skip

    meter_id: int
    channel: str
    start: datetime
    end: datetime
    billable: bool
    reasons: list[str] = Field(
        description="why it is not billable: no_start_read, no_end_read, "
        "start_read_not_at_boundary, end_read_not_at_boundary, register_mismatch, "
        "incomplete, open_anomalies, unknown_meter"
    )
    start_read: BoundaryReadOut | None
    end_read: BoundaryReadOut | None
    multiplier: DecimalStr | None
    consumption: DecimalStr = Field(description="sum of the latest interval values (primary)")
    register_delta: DecimalStr | None = Field(description="(end - start read) × multiplier")
    difference: DecimalStr | None = Field(description="consumption - register_delta")
    tou: list[TouOut]
    max_demand: DecimalStr | None = Field(description="highest interval average power (kW)")
    max_demand_at: datetime | None = Field(description="start of that interval")
    intervals: int
    missing_intervals: int
    estimated_intervals: int = Field(description="estimated or substituted intervals")
    estimated_energy: DecimalStr
    completeness: float = Field(ge=0, le=1)
    open_anomalies: list[int] = Field(description="ids of unresolved anomalies in the period")


class DeterminantBatch(BaseModel):
    """A batch determinant request."""

    model_config = ConfigDict(extra="forbid")

    meter_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=1000, description="up to 1,000 meters"
    )
    start: datetime = Field(description="period start, with offset")
    end: datetime = Field(description="period end (excluded), with offset")
    channel: str = Field(default="1.8.0", pattern=r"^[0-9A-Za-z.:_\-]{1,32}$")


class DeterminantList(_Out):
    """Determinants of a batch, in the order of the request's meter ids."""

    items: list[DeterminantOut]


class AnomalyOut(_Out):
    """An anomaly with its lifecycle."""

    id: int
    kind: str
    severity: str
    status: Literal["open", "acknowledged", "resolved"]
    meter_id: int | None
    transformer_area: str | None
    start: datetime
    end: datetime | None
    evidence: dict[str, object]
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    comment: str | None


class TransitionIn(BaseModel):
    """An acknowledgement or resolution."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000, pattern=SafeText)


class EditIn(BaseModel):
    """An operator's correction of one interval."""

    model_config = ConfigDict(extra="forbid")

    start: datetime = Field(description="start of the interval to correct, with offset")
    channel: str = Field(default="1.8.0", pattern=r"^[0-9A-Za-z.:_\-]{1,32}$")
    value: DecimalStr | None = Field(description="the corrected energy; null marks it missing")
    reason: str = Field(min_length=1, max_length=2000, pattern=SafeText,
                        description="why (kept with the new version)")  # fmt: skip
    reason_codes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,15}$")]] = Field(
        default_factory=list, max_length=4
    )
