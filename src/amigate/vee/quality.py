"""The quality vocabulary in one table: qualities, NEM12 flags and methods, IEC 61968-9 codes.

An interval carries a :class:`~amigate.domain.Quality`, a method (an AEMO NEM12
substitution/estimation method number) and reason codes (IEC 61968-9
``ReadingQualityType`` codes ``system.category.index``, system 2 = the metering
system). Each reason amigate gives is mapped here once, with the NEM12 reason
code a NEM12 export would carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from amigate.domain import Quality

__all__ = [
    "METHODS",
    "NEM12_FLAGS",
    "REASONS",
    "Method",
    "Reason",
    "nem12_quality_method",
]

#: amigate quality -> NEM12 quality flag (AEMO MDFF NEM12: A/E/S/F/N/V).
NEM12_FLAGS: dict[Quality, str] = {
    Quality.ACTUAL: "A",
    Quality.ESTIMATED: "E",
    Quality.SUBSTITUTED: "S",
    Quality.FINAL_SUBSTITUTE: "F",
    Quality.MISSING: "N",
    Quality.VARIABLE: "V",
}


@dataclass(frozen=True)
class Method:
    """A substitution or estimation method (NEM12 method number, install types 1–4)."""

    number: int
    name: str


#: The methods amigate uses, by NEM12 number.
METHODS: dict[str, Method] = {
    "like_day_average": Method(15, "retrospective average like day"),
    "agreed": Method(16, "agreed (operator edit)"),
    "linear": Method(17, "linear interpolation"),
    "zero": Method(19, "zero (de-energised)"),
}


@dataclass(frozen=True)
class Reason:
    """Why a value is what it is: an IEC 61968-9 reading-quality code and its NEM12 reason."""

    iec: str
    nem12: int | None
    text: str


#: Reason codes amigate writes, by short name. ``iec`` is what ``reason_codes`` stores.
REASONS: dict[str, Reason] = {
    "estimated": Reason("2.8.0", 76, "estimated: the read failed (communication fault)"),
    "estimated_span": Reason("2.8.1", 69, "substituted: shaped to meet the register delta"),
    "edited": Reason("2.7.0", 24, "edited by an operator: data correction"),
    "added": Reason("2.7.1", 24, "added by an operator"),
    "missing": Reason("2.5.259", 78, "known missing read"),
    "skipped": Reason("2.4.4", 76, "skipped interval"),
    "zero_usage": Reason("2.6.1", 68, "zero consumption while energised"),
    "usage_above": Reason("2.6.3", 74, "usage above the meter's history"),
    "usage_below": Reason("2.6.4", 73, "usage below the meter's history"),
    "tou_sum": Reason("2.6.9", None, "tariff registers do not sum to the total"),
    "outside_range": Reason("2.5.256", 45, "outside the expected range (failed validation)"),
    "reverse_rotation": Reason("2.3.4", 39, "reverse energy"),
    "clock_error": Reason("2.1.9", 86, "meter clock out of tolerance"),
    "power_quality": Reason("2.2.0", 28, "power quality: voltage or current transformer fault"),
    "tamper": Reason("2.3.3", 61, "revenue protection suspect"),
    "backfilled": Reason("2.0.0", 72, "actual read from the meter's load profile"),
}


def nem12_quality_method(quality: Quality, method: int | None) -> str:
    """The NEM12 ``QualityMethod`` field: the flag, plus the method for E/S/F.

    Args:
        quality: the interval's quality.
        method: its NEM12 method number (required for estimates and substitutes).

    Returns:
        e.g. ``"A"``, ``"S17"``, ``"E15"``.

    Raises:
        ValueError: an estimate or substitute has no method.
    """
    flag = NEM12_FLAGS[quality]
    if flag in {"A", "N", "V"}:
        return flag
    if method is None:
        raise ValueError(f"a {quality.name.lower()} interval needs a method")
    return f"{flag}{method:02d}"
