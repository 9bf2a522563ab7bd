"""DL/T 645 data-identifier catalogue as data: one frozen DiSpec per identifier, per version."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final

from amigate.codecs.dlt645_frame import Dlt645Version
from amigate.codecs.dlt645_values import ValueFormat, ValueKind, value_format
from amigate.errors import DataError, UnknownDataIdentifier

__all__ = [
    "CATALOGUE",
    "LOAD_PROFILE_CLASSES",
    "Category",
    "Confidence",
    "DiSpec",
    "FieldSpec",
    "di_size",
    "find_di",
    "lookup_di",
]

V07: Final = Dlt645Version.V2007
V97: Final = Dlt645Version.V1997


class Category(enum.Enum):
    """What kind of quantity a data identifier addresses."""

    ENERGY = "energy"
    DEMAND = "demand"
    INSTANTANEOUS = "instantaneous"
    EVENT = "event"
    PARAMETER = "parameter"
    FREEZE = "freeze"
    LOAD_PROFILE = "load_profile"


class Confidence(enum.Enum):
    """How well the public sources support an entry (legend of the protocol reference)."""

    CONFIRMED = "C"  # two or more independent public sources
    SINGLE = "S"  # one public source, or consistent but not seen in the standard text
    UNCONFIRMED = "U"  # from memory of the standard; verify with the vendor's sheet


C: Final = Confidence.CONFIRMED
S: Final = Confidence.SINGLE
U: Final = Confidence.UNCONFIRMED


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldSpec:
    """One value inside a reply.

    Attributes:
        name: human-readable name.
        format: the format as written in the standard (``XXXXXX.XX``, ``YYMMDDhhmm``).
        unit: unit string, or ``None`` for dimensionless items and stamps.
        channel: normalized OBIS-style channel code, where one exists.
        signed: bit 7 of the most significant byte is a sign.
        kind: explicit value kind when the format alone is ambiguous.
        value_format: the parsed format (derived).
        length: bytes on the wire (derived).
        decimals: implied decimals of a number, -1 for other kinds (derived).
    """

    name: str
    format: str
    unit: str | None = None
    channel: str | None = None
    signed: bool = False
    kind: ValueKind | None = None
    value_format: ValueFormat = field(init=False, repr=False, compare=False)
    length: int = field(init=False, repr=False, compare=False)
    decimals: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse ``format`` once; ``decimals`` is -1 for items that are not numbers."""
        parsed = value_format(self.format, self.kind)
        object.__setattr__(self, "value_format", parsed)
        object.__setattr__(self, "length", parsed.length)
        number = parsed.kind is ValueKind.NUMBER
        object.__setattr__(self, "decimals", parsed.decimals if number else -1)

    @property
    def scale(self) -> Decimal:
        """Resolution of the last digit (``Decimal("0.01")`` for ``XXXXXX.XX``)."""
        return self.value_format.scale


@dataclass(frozen=True, kw_only=True, slots=True)
class DiSpec:
    """A catalogued data identifier.

    Attributes:
        di: the identifier as an int (``0x00010000``; 1997: ``0x9010``).
        version: the protocol generation.
        name: human-readable name.
        category: the quantity class.
        fields: the values in reply order (for tariff blocks: the total's fields).
        tariff_fields: for tariff blocks, one group per tariff with ``{n}`` in name
            and channel; the reply may hold any number of groups.
        tariffs: nominal number of tariff groups (for length estimates).
        trailing: the reply may carry more bytes after ``fields`` (long event
            records); they are kept raw and not decoded.
        confidence: how well public sources support the entry.
        note: caveats.
        fixed_length: bytes of ``fields`` (derived).
        decoders: compiled decoders of the payload, by payload length, filled on first
            use by the reply decoder (derived; see ``dlt645_payload``).
    """

    di: int
    version: Dlt645Version
    name: str
    category: Category
    fields: tuple[FieldSpec, ...] = ()
    tariff_fields: tuple[FieldSpec, ...] = ()
    tariffs: int = 0
    trailing: bool = False
    confidence: Confidence = C
    note: str = ""
    fixed_length: int = field(init=False, repr=False, compare=False)
    decoders: dict[int, Callable[[bytes], tuple[Any, ...]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Precompute the length of ``fields``; start with no compiled decoders."""
        object.__setattr__(self, "fixed_length", sum(f.length for f in self.fields))
        object.__setattr__(self, "decoders", {})

    @property
    def di_hex(self) -> str:
        """The identifier as printed in tables: 8 hex digits (2007) or 4 (1997)."""
        return f"{self.di:0{2 * di_size(self.version)}X}"

    @property
    def length(self) -> int:
        """Nominal payload length in bytes (data after the DI)."""
        if self.category is Category.LOAD_PROFILE:
            return _load_profile_length(self.di)
        group = sum(f.length for f in self.tariff_fields)
        return sum(f.length for f in self.fields) + self.tariffs * group

    @property
    def format(self) -> str:
        """Format of the first value (the item's format for single items)."""
        return self.fields[0].format if self.fields else ""

    @property
    def unit(self) -> str | None:
        """Unit of the first value."""
        return self.fields[0].unit if self.fields else None

    @property
    def signed(self) -> bool:
        """Whether the first value carries a sign bit."""
        return bool(self.fields) and self.fields[0].signed

    @property
    def channel(self) -> str | None:
        """Channel of the first value."""
        return self.fields[0].channel if self.fields else None

    @property
    def scale(self) -> Decimal:
        """Resolution of the first value."""
        return self.fields[0].scale if self.fields else Decimal(1)

    def layout(self, payload_length: int) -> tuple[FieldSpec, ...]:
        """Return the fields that a payload of ``payload_length`` bytes holds.

        Args:
            payload_length: bytes after the DI (and before any follow-up SEQ).

        Returns:
            The fields in order.

        Raises:
            DataError: when the length does not fit the layout.
        """
        return _layout(self, payload_length)


def di_size(version: Dlt645Version) -> int:
    """Return the DI size in bytes: 4 for 2007, 2 for 1997.

    Args:
        version: the protocol generation.

    Returns:
        4 or 2.
    """
    return 4 if version is Dlt645Version.V2007 else 2


_TARIFF_LAYOUTS: dict[int, tuple[FieldSpec, ...]] = {}


def _layout(spec: DiSpec, payload_length: int) -> tuple[FieldSpec, ...]:
    fixed = spec.fixed_length
    if payload_length == fixed and not spec.tariff_fields:
        return spec.fields
    if spec.tariff_fields:
        key = (spec.di << 10) | (payload_length << 1) | (spec.version is V97)
        cached = _TARIFF_LAYOUTS.get(key)
        if cached is not None:
            return cached
        group = sum(f.length for f in spec.tariff_fields)
        count, rest = divmod(payload_length - fixed, group)
        if payload_length < fixed or rest:
            raise DataError(
                f"DI {spec.di_hex} ({spec.name}): {payload_length} bytes is not the total "
                f"plus whole tariff groups of {group} bytes"
            )
        extra = tuple(
            replace(f, name=f.name.format(n=n), channel=f.channel and f.channel.format(n=n))
            for n in range(1, count + 1)
            for f in spec.tariff_fields
        )
        if len(_TARIFF_LAYOUTS) < 4096:
            _TARIFF_LAYOUTS[key] = spec.fields + extra
        return spec.fields + extra
    if spec.trailing and payload_length >= fixed:
        return spec.fields
    raise DataError(
        f"DI {spec.di_hex} ({spec.name}): expected {fixed} data bytes, got {payload_length}"
    )


# --- building blocks ------------------------------------------------------------------

_ENERGY: Final = "XXXXXX.XX"
_PHASES: Final = ("A", "B", "C")
_NTH: Final = "previous settlement {}"
_TARIFF_NAMES: Final = ("total", "T1", "T2", "T3", "T4")


@functools.cache
def _f(name: str, fmt: str, unit: str | None = None, channel: str | None = None, *,
       signed: bool = False, kind: ValueKind | None = None) -> FieldSpec:
    return FieldSpec(name=name, format=fmt, unit=unit, channel=channel, signed=signed, kind=kind)


def _period_channel(channel: str | None, period: int) -> str | None:
    """OBIS billing-period suffix: ``1.8.0`` now, ``1.8.0*03`` at the 3rd previous settlement."""
    if channel is None or period == 0:
        return channel
    return f"{channel}*{period:02d}"


def _period_name(name: str, period: int) -> str:
    return name if period == 0 else f"{name} ({_NTH.format(period)})"


# DI2, name, unit, OBIS quantity, signed, confidence. Energy (DI3 = 00), reference §6.1.
_ENERGY_QUANTITIES: Final = (
    (0x00, "combined active energy", "kWh", None, True, S),
    (0x01, "forward active energy", "kWh", "1", False, C),
    (0x02, "reverse active energy", "kWh", "2", False, C),
    (0x03, "combined reactive energy 1", "kvarh", "3", True, C),
    (0x04, "combined reactive energy 2", "kvarh", "4", True, C),
    (0x05, "quadrant I reactive energy", "kvarh", "5", False, C),
    (0x06, "quadrant II reactive energy", "kvarh", "6", False, C),
    (0x07, "quadrant III reactive energy", "kvarh", "7", False, C),
    (0x08, "quadrant IV reactive energy", "kvarh", "8", False, C),
    (0x09, "forward apparent energy", "kVAh", "9", False, C),
    (0x0A, "reverse apparent energy", "kVAh", "10", False, C),
)
# Per-phase energy registers (no tariff split); start values confirmed, upper bounds [U].
_PHASE_ENERGY: Final = (
    (0x15, "A phase forward active energy", "21.8.0"),
    (0x16, "A phase reverse active energy", "22.8.0"),
    (0x29, "B phase forward active energy", "41.8.0"),
    (0x2A, "B phase reverse active energy", "42.8.0"),
    (0x3D, "C phase forward active energy", "61.8.0"),
    (0x3E, "C phase reverse active energy", "62.8.0"),
)


def _tariff_block(
    di: int, version: Dlt645Version, name: str, category: Category,
    groups: tuple[tuple[str, str, str | None, str | None, bool], ...], confidence: Confidence,
    note: str = "", tariffs: int = 4,
) -> DiSpec:
    """A block of total + tariffs; ``groups`` = (name, format, unit, channel base, signed)."""
    total = tuple(
        _f(f"{n} total", fmt, unit, base and f"{base}.0", signed=sg)
        for n, fmt, unit, base, sg in groups
    )
    per_tariff = tuple(
        _f(f"{n} T{{n}}", fmt, unit, base and f"{base}.{{n}}", signed=sg)
        for n, fmt, unit, base, sg in groups
    )
    return DiSpec(di=di, version=version, name=name, category=category, fields=total,
                  tariff_fields=per_tariff, tariffs=tariffs, confidence=confidence, note=note)


def _energy_2007() -> Iterator[DiSpec]:
    for di2, name, unit, obis, signed, conf in _ENERGY_QUANTITIES:
        for period in range(0x0D):
            for tariff in range(5):
                channel = _period_channel(obis and f"{obis}.8.{tariff}", period)
                full = _period_name(f"{name} {_TARIFF_NAMES[tariff]}", period)
                yield DiSpec(
                    di=(di2 << 16) | (tariff << 8) | period, version=V07, name=full,
                    category=Category.ENERGY, confidence=conf,
                    fields=(_f(full, _ENERGY, unit, channel, signed=signed),),
                )
            base = obis and f"{obis}.8"
            block = _tariff_block(
                (di2 << 16) | 0xFF00 | period, V07, _period_name(f"{name} block", period),
                Category.ENERGY, ((name, _ENERGY, unit, base, signed),), conf,
                note="total + as many tariffs as the meter has (04000204)",
            )
            if period:
                block = _with_period(block, period)
            yield block
    for di2, name, channel in _PHASE_ENERGY:
        for period in range(0x0D):
            full = _period_name(name, period)
            yield DiSpec(
                di=(di2 << 16) | period, version=V07, name=full, category=Category.ENERGY,
                fields=(_f(full, _ENERGY, "kWh", _period_channel(channel, period)),),
                confidence=C, note="per-phase DI2 range beyond the first item is [U]",
            )


@functools.cache
def _suffixed(fields: tuple[FieldSpec, ...], period: int) -> tuple[FieldSpec, ...]:
    return tuple(replace(f, channel=f.channel and f"{f.channel}*{period:02d}") for f in fields)


def _with_period(spec: DiSpec, period: int) -> DiSpec:
    """Add the billing-period suffix to every channel of a block."""
    return replace(
        spec,
        fields=_suffixed(spec.fields, period),
        tariff_fields=_suffixed(spec.tariff_fields, period),
    )


# Maximum demand (DI3 = 01): demand XX.XXXX + time YYMMDDhhmm, 8 bytes per item. [S]
_DEMAND_UNITS: Final = {1: "kW", 2: "kW", 9: "kVA", 10: "kVA"}


def _demand_2007() -> Iterator[DiSpec]:
    for di2, name, _unit, obis, _signed, _conf in _ENERGY_QUANTITIES[1:]:
        unit = _DEMAND_UNITS.get(di2, "kvar")
        signed = di2 in (0x03, 0x04)
        qty = name.replace(" energy", "") + " max demand"
        for period in range(0x0D):
            for tariff in range(5):
                full = _period_name(f"{qty} {_TARIFF_NAMES[tariff]}", period)
                yield DiSpec(
                    di=0x01000000 | (di2 << 16) | (tariff << 8) | period, version=V07,
                    name=full, category=Category.DEMAND, confidence=S,
                    note="3-byte demand + 5-byte time; some meters use 4-byte demand",
                    fields=(
                        _f(full, "XX.XXXX", unit, _period_channel(f"{obis}.6.{tariff}", period),
                           signed=signed),
                        _f(f"{full} time", "YYMMDDhhmm"),
                    ),
                )
            block = _tariff_block(
                0x0100FF00 | (di2 << 16) | period, V07, _period_name(f"{qty} block", period),
                Category.DEMAND,
                ((qty, "XX.XXXX", unit, f"{obis}.6", signed), (f"{qty} time", "YYMMDDhhmm",
                 None, None, False)), S,
            )
            yield _with_period(block, period) if period else block


def _phase_items(
    di_base: int, name: str, fmt: str, unit: str | None, channels: tuple[str | None, ...],
    *, signed: bool, total: bool, confidence: Confidence = C, note: str = "",
) -> Iterator[DiSpec]:
    """Items ``di_base | 00/01/02/03 << 8`` (total, A, B, C) and their FF block."""
    labels = (("total", *_PHASES) if total else _PHASES)
    first = 0 if total else 1
    fields = tuple(
        _f(f"{lbl} phase {name}" if lbl != "total" else f"total {name}", fmt, unit, ch,
           signed=signed)
        for lbl, ch in zip(labels, channels, strict=True)
    )
    for i, spec in enumerate(fields):
        yield DiSpec(di=di_base | ((first + i) << 8), version=V07, name=spec.name,
                     category=Category.INSTANTANEOUS, fields=(spec,), confidence=confidence,
                     note=note)
    yield DiSpec(di=di_base | 0xFF00, version=V07, name=f"{name} block",
                 category=Category.INSTANTANEOUS, fields=fields, confidence=confidence,
                 note=note)


def _instantaneous_2007() -> Iterator[DiSpec]:
    yield from _phase_items(0x02010000, "voltage", "XXX.X", "V",
                            ("32.7.0", "52.7.0", "72.7.0"), signed=False, total=False)
    yield from _phase_items(0x02020000, "current", "XXX.XXX", "A",
                            ("31.7.0", "51.7.0", "71.7.0"), signed=True, total=False)
    yield from _phase_items(0x02030000, "active power", "XX.XXXX", "kW",
                            ("1.7.0", "21.7.0", "41.7.0", "61.7.0"), signed=True, total=True)
    yield from _phase_items(0x02040000, "reactive power", "XX.XXXX", "kvar",
                            ("3.7.0", "23.7.0", "43.7.0", "63.7.0"), signed=True, total=True)
    yield from _phase_items(0x02050000, "apparent power", "XX.XXXX", "kVA",
                            ("9.7.0", "29.7.0", "49.7.0", "69.7.0"), signed=False, total=True,
                            confidence=U, note="sign convention of apparent power unconfirmed")
    yield from _phase_items(0x02060000, "power factor", "X.XXX", None,
                            ("13.7.0", "33.7.0", "53.7.0", "73.7.0"), signed=True, total=True)
    yield from _phase_items(0x02070000, "phase angle", "XXX.X", "°",
                            (None, None, None), signed=True, total=False, confidence=S)
    yield from _phase_items(0x02080000, "voltage THD", "XX.XX", "%",
                            (None, None, None), signed=False, total=False)
    yield from _phase_items(0x02090000, "current THD", "XX.XX", "%",
                            (None, None, None), signed=False, total=False)
    for di0, name, fmt, unit, channel, signed in (
        (0x01, "neutral current", "XXX.XXX", "A", "91.7.0", True),
        (0x02, "grid frequency", "XX.XX", "Hz", "14.7.0", False),
        (0x03, "one-minute average total active power", "XX.XXXX", "kW", None, True),
        (0x04, "current active demand", "XX.XXXX", "kW", "1.4.0", True),
        (0x05, "current reactive demand", "XX.XXXX", "kvar", "3.4.0", True),
        (0x06, "current apparent demand", "XX.XXXX", "kVA", "9.4.0", False),
        (0x07, "meter temperature", "XXX.X", "°C", None, True),
        (0x08, "clock battery voltage", "XX.XX", "V", None, False),
        (0x09, "meter-reading battery voltage", "XX.XX", "V", None, False),
        (0x0A, "internal battery working time", "XXXXXXXX", "min", None, False),
    ):
        yield DiSpec(di=0x02800000 | di0, version=V07, name=name,
                     category=Category.INSTANTANEOUS,
                     fields=(_f(name, fmt, unit, channel, signed=signed),))


def _param(di: int, name: str, fmt: str, unit: str | None = None, *,
           kind: ValueKind | None = None, confidence: Confidence = C, note: str = "",
           version: Dlt645Version = V07, channel: str | None = None) -> DiSpec:
    return DiSpec(di=di, version=version, name=name, category=Category.PARAMETER,
                  fields=(_f(name, fmt, unit, channel, kind=kind),), confidence=confidence,
                  note=note)


def _parameters_2007() -> Iterator[DiSpec]:
    digits = ValueKind.DIGITS
    yield _param(0x04000101, "date", "YYMMDDWW", note="WW: 0 = Sunday; meter local time")
    yield _param(0x04000102, "time", "hhmmss", note="meter local time")
    yield _param(0x04000103, "demand period", "NN", "min")
    yield _param(0x04000104, "demand sliding window", "NN", "min")
    yield _param(0x0400010C, "date and time", "YYMMDDWWhhmmss", confidence=S,
                 note="State Grid amendment No. 3")
    yield _param(0x04000204, "number of tariffs", "NN")
    yield _param(0x04000401, "communication address", "NNNNNNNNNNNN", kind=digits)
    yield _param(0x04000402, "meter number", "NNNNNNNNNNNN", kind=digits)
    ascii_note = "byte order of ASCII items (last character first) is [U]"
    for di, name, size in (
        (0x04000403, "asset number", 32), (0x04000404, "rated voltage", 6),
        (0x04000405, "rated current", 6), (0x04000406, "maximum current", 6),
        (0x0400040B, "meter model", 10), (0x0400040C, "production date", 10),
        (0x0400040D, "protocol version", 16),
    ):
        yield _param(di, name, f"ASCII({size})", confidence=U, note=ascii_note)
    yield _param(0x04000409, "active meter constant", "XXXXXX", "imp/kWh")
    yield _param(0x0400040A, "reactive meter constant", "XXXXXX", "imp/kvarh")
    words = tuple(_f(f"status word {i}", "BITS(2)") for i in range(1, 8))
    for i, word in enumerate(words, start=1):
        yield DiSpec(di=0x04000500 | i, version=V07, name=word.name,
                     category=Category.PARAMETER, fields=(word,), confidence=S)
    yield DiSpec(di=0x040005FF, version=V07, name="status word block",
                 category=Category.PARAMETER, fields=words, confidence=S)
    yield _param(0x00900200, "remaining prepaid balance", _ENERGY, "yuan", confidence=S,
                 note="prepayment meters only")


# Event records (DI3 = 03), reference §6.4; counters are count + cumulative minutes per phase.
_PHASE_EVENTS: Final = (
    (0x01, "voltage loss", C),
    (0x04, "phase break", S),
    (0x0B, "current loss", S),
    (0x0E, "power reversal", S),
)


def _record(di: int, name: str, confidence: Confidence, note: str = "") -> DiSpec:
    return DiSpec(
        di=di, version=V07, name=name, category=Category.EVENT, trailing=True,
        confidence=confidence,
        note=note or "only start and end time decoded; the snapshot that follows is kept raw",
        fields=(_f(f"{name} start", "YYMMDDhhmmss"), _f(f"{name} end", "YYMMDDhhmmss")),
    )


def _counter(di: int, name: str, confidence: Confidence, note: str = "") -> DiSpec:
    return DiSpec(di=di, version=V07, name=name, category=Category.EVENT, confidence=confidence,
                  fields=(_f(name, "XXXXXX"),), note=note)


def _events_2007() -> Iterator[DiSpec]:
    for di2, name, conf in _PHASE_EVENTS:
        yield DiSpec(
            di=0x03000000 | (di2 << 16), version=V07, name=f"{name} counters",
            category=Category.EVENT, confidence=conf,
            fields=tuple(
                _f(f"{p} phase {name} {what}", "XXXXXX", unit)
                for p in _PHASES
                for what, unit in (("count", None), ("total duration", "min"))
            ),
        )
        for phase in (1, 2, 3):
            for nth in range(1, 11):
                yield _record(0x03000000 | (di2 << 16) | (phase << 8) | nth,
                              f"{_PHASES[phase - 1]} phase {name} record {nth}", conf)
    yield _counter(0x03110000, "power-down count", C)
    yield _counter(0x03300000, "programming count", C)
    yield _counter(0x03300D00, "meter cover open count", C)
    yield _counter(0x03300E00, "terminal cover open count", S)
    for nth in range(1, 11):
        yield _record(0x03110000 | nth, f"power-down record {nth}", S)
        yield _record(0x03300D00 | nth, f"meter cover open record {nth}", S,
                      "start and end time [S]; energies at the event follow, kept raw")
    # State Grid amendment event counters (DI3 = 10..1F): table not public.
    yield _counter(0x1D000001, "trip count", U, "State Grid amendment; verify with vendor")
    yield _counter(0x1E000001, "close count", U, "State Grid amendment; verify with vendor")


# Frozen data (DI3 = 05), reference §6.6: 05 kk tt nn. Depth per freeze type.
_FREEZES: Final = ((0x00, "timed freeze", 12, S), (0x01, "instant freeze", 3, C),
                   (0x06, "daily freeze", 62, C))


def _freezes_2007() -> Iterator[DiSpec]:
    variable = tuple(
        _f(f"{w} {p}", "XX.XXXX", unit, ch, signed=True)
        for w, unit, chans in (("active power", "kW", ("1.7.0", "21.7.0", "41.7.0", "61.7.0")),
                               ("reactive power", "kvar", ("3.7.0", "23.7.0", "43.7.0", "63.7.0")))
        for p, ch in zip(("total", *_PHASES), chans, strict=True)
    )
    for kk, kind, depth, conf in _FREEZES:
        for nth in range(1, depth + 1):
            base = 0x05000000 | (kk << 16) | nth
            label = f"{kind} {nth}"
            yield DiSpec(di=base, version=V07, name=f"{label} time", category=Category.FREEZE,
                         fields=(_f(f"{label} time", "YYMMDDhhmm"),), confidence=conf)
            for tt, (di2, name, unit, obis, signed, _c) in enumerate(
                _ENERGY_QUANTITIES[1:9], start=1
            ):
                yield _tariff_block(
                    base | (tt << 8), V07, f"{label} {name}", Category.FREEZE,
                    ((name, _ENERGY, unit, obis and f"{obis}.8", signed),), conf,
                    note=f"energy as in DI 00{di2:02X}FF00 at the freeze time",
                )
            for tt, obis, name in ((0x09, "1", "forward active"), (0x0A, "2", "reverse active")):
                yield _tariff_block(
                    base | (tt << 8), V07, f"{label} {name} max demand", Category.FREEZE,
                    ((f"{name} max demand", "XX.XXXX", "kW", f"{obis}.6", False),
                     (f"{name} max demand time", "YYMMDDhhmm", None, None, False)), S,
                )
            yield DiSpec(di=base | 0x1000, version=V07, name=f"{label} variables",
                         category=Category.FREEZE, fields=variable, confidence=S)


# Load profile (DI3 = 06): record classes, reference §6.7. Record = A0 A0 n time classes.. CS E5.
def _set(quantity: str, fmt: str, unit: str | None, channels: str, *, signed: bool = False,
         labels: tuple[str, ...] = ("total", *_PHASES)) -> tuple[FieldSpec, ...]:
    """One field per label, e.g. total/A/B/C active power; ``channels`` space-separated."""
    return tuple(
        _f(f"{label} {quantity}", fmt, unit, channel, signed=signed)
        for label, channel in zip(labels, channels.split(), strict=True)
    )


LOAD_PROFILE_CLASSES: Final[tuple[tuple[FieldSpec, ...], ...]] = (
    _set("phase voltage", "XXX.X", "V", "32.7.0 52.7.0 72.7.0", labels=_PHASES)
    + _set("phase current", "XXX.XXX", "A", "31.7.0 51.7.0 71.7.0", signed=True, labels=_PHASES)
    + (_f("grid frequency", "XX.XX", "Hz", "14.7.0"),),
    _set("active power", "XX.XXXX", "kW", "1.7.0 21.7.0 41.7.0 61.7.0", signed=True)
    + _set("reactive power", "XX.XXXX", "kvar", "3.7.0 23.7.0 43.7.0 63.7.0", signed=True),
    _set("power factor", "X.XXX", None, "13.7.0 33.7.0 53.7.0 73.7.0", signed=True),
    (
        _f("forward active energy", _ENERGY, "kWh", "1.8.0"),
        _f("reverse active energy", _ENERGY, "kWh", "2.8.0"),
        _f("combined reactive energy 1", _ENERGY, "kvarh", "3.8.0", signed=True),
        _f("combined reactive energy 2", _ENERGY, "kvarh", "4.8.0", signed=True),
    ),
    _set("reactive energy", _ENERGY, "kvarh", "5.8.0 6.8.0 7.8.0 8.8.0",
         labels=("quadrant I", "quadrant II", "quadrant III", "quadrant IV")),
    (
        _f("active demand", "XX.XXXX", "kW", "1.4.0", signed=True),
        _f("reactive demand", "XX.XXXX", "kvar", "3.4.0", signed=True),
    ),
)
LOAD_PROFILE_TIME: Final = _f("load record time", "YYMMDDhhmm")


def _load_profile_length(di: int) -> int:
    """Nominal bytes of one record: A0 A0 n, time, class blocks + AA separators, CS, E5."""
    classes = range(6) if (di >> 16) & 0xFF == 0 else [((di >> 16) & 0xFF) - 1]
    body = sum(sum(f.length for f in LOAD_PROFILE_CLASSES[c]) + 1 for c in classes)
    return 3 + 5 + body + 2


def _load_profile_2007() -> Iterator[DiSpec]:
    modes = ("earliest records", "records from a given time", "latest record")
    for cls in range(7):
        what = "all classes" if cls == 0 else f"class {cls}"
        for mode, label in enumerate(modes):
            yield DiSpec(di=0x06000000 | (cls << 16) | mode, version=V07,
                         name=f"load profile {what}, {label}", category=Category.LOAD_PROFILE,
                         confidence=S,
                         note="record layout [C] from firmware sources; no public reply "
                              "vector; class-only record layout [U]")


# --- DL/T 645-1997 (2-byte DI), reference §7 ----------------------------------------------

_PERIODS_97: Final = ((0, ""), (1, " (last month)"), (2, " (month before last)"))


def _catalogue_1997() -> Iterator[DiSpec]:
    energies = (
        (0x0, 0x1, "forward active energy", "kWh", "1"),
        (0x0, 0x2, "reverse active energy", "kWh", "2"),
        (0x1, 0x1, "forward reactive energy", "kvarh", "3"),
        (0x1, 0x2, "reverse reactive energy", "kvarh", "4"),
    )
    for period, suffix in _PERIODS_97:
        for kind, direction, name, unit, obis in energies:
            di1 = 0x90 | (period << 2) | kind
            conf = C if period == 0 or kind == 0 else S
            for tariff in range(5):
                full = f"{name} {_TARIFF_NAMES[tariff]}{suffix}"
                channel = _period_channel(f"{obis}.8.{tariff}", period)
                yield DiSpec(di=(di1 << 8) | (direction << 4) | tariff, version=V97, name=full,
                             category=Category.ENERGY, confidence=conf,
                             fields=(_f(full, _ENERGY, unit, channel),))
            block = _tariff_block((di1 << 8) | (direction << 4) | 0xF, V97,
                                  f"{name} block{suffix}", Category.ENERGY,
                                  ((name, _ENERGY, unit, f"{obis}.8", False),), conf)
            yield _with_period(block, period) if period else block
    for direction, name, obis in ((1, "forward active", "1"), (2, "reverse active", "2")):
        for tariff in range(5):
            label = f"{name} max demand {_TARIFF_NAMES[tariff]}"
            yield DiSpec(di=0xA000 | (direction << 4) | tariff, version=V97, name=label,
                         category=Category.DEMAND, confidence=C if tariff == 0 else S,
                         fields=(_f(label, "XX.XXXX", "kW", f"{obis}.6.{tariff}"),))
            yield DiSpec(di=0xB000 | (direction << 4) | tariff, version=V97, name=f"{label} time",
                         category=Category.DEMAND, confidence=C if tariff == 0 else S,
                         fields=(_f(f"{label} time", "MMDDhhmm"),),
                         note="no year in the 1997 stamp")
    instantaneous: tuple[tuple[int, str, tuple[FieldSpec, ...]], ...] = (
        (0xB611, "voltage", _set("phase voltage", "XXX", "V", "32.7.0 52.7.0 72.7.0",
                                 labels=_PHASES)),
        (0xB621, "current", _set("phase current", "XX.XX", "A", "31.7.0 51.7.0 71.7.0",
                                 labels=_PHASES)),
        (0xB630, "active power", _set("active power", "XX.XXXX", "kW",
                                      "1.7.0 21.7.0 41.7.0 61.7.0")),
        (0xB640, "reactive power", _set("reactive power", "XX.XX", "kvar",
                                        "3.7.0 23.7.0 43.7.0 63.7.0")),
        (0xB650, "power factor", _set("power factor", "X.XXX", None,
                                      "13.7.0 33.7.0 53.7.0 73.7.0")),
    )
    for first, name, fields in instantaneous:
        for i, item in enumerate(fields):
            yield DiSpec(di=first + i, version=V97, name=item.name,
                         category=Category.INSTANTANEOUS, fields=(item,),
                         note="1997 resolution differs from 2007; sign convention [U]")
        yield DiSpec(di=(first & 0xFFF0) | 0xF, version=V97, name=f"{name} block",
                     category=Category.INSTANTANEOUS, fields=fields, confidence=S)
    yield _param(0xC010, "date", "YYMMDDWW", version=V97, note="WW: 0 = Sunday")
    yield _param(0xC011, "time", "hhmmss", version=V97)
    yield _param(0xC030, "active meter constant", "NNNNNN", "imp/kWh", version=V97)
    yield _param(0xC031, "reactive meter constant", "NNNNNN", "imp/kvarh", version=V97)
    yield _param(0xC032, "meter number", "NNNNNNNNNNNN", kind=ValueKind.DIGITS, version=V97)
    yield _param(0xC033, "user number", "NNNNNNNNNNNN", kind=ValueKind.DIGITS, version=V97,
                 confidence=S)


def _build(specs: Iterable[DiSpec]) -> dict[tuple[Dlt645Version, int], DiSpec]:
    table: dict[tuple[Dlt645Version, int], DiSpec] = {}
    for spec in specs:
        key = (spec.version, spec.di)
        if key in table:
            raise AssertionError(f"duplicate DI {spec.di_hex} in the catalogue")
        table[key] = spec
    return table


#: Every catalogued identifier, keyed by (version, DI).
CATALOGUE: Final[dict[tuple[Dlt645Version, int], DiSpec]] = _build(
    (
        *_energy_2007(),
        *_demand_2007(),
        *_instantaneous_2007(),
        *_parameters_2007(),
        *_events_2007(),
        *_freezes_2007(),
        *_load_profile_2007(),
        *_catalogue_1997(),
    )
)


_BY_DI_2007: Final = {di: spec for (v, di), spec in CATALOGUE.items() if v is V07}
_BY_DI_1997: Final = {di: spec for (v, di), spec in CATALOGUE.items() if v is V97}
#: The same, keyed by the DI bytes as they appear in a frame (DI0 first), for decoders.
BY_WIRE_DI: Final[dict[Dlt645Version, dict[bytes, DiSpec]]] = {
    V07: {di.to_bytes(4, "little"): spec for di, spec in _BY_DI_2007.items()},
    V97: {di.to_bytes(2, "little"): spec for di, spec in _BY_DI_1997.items()},
}


def find_di(di: int, version: Dlt645Version = Dlt645Version.V2007) -> DiSpec | None:
    """Return the catalogue entry for ``di``, or ``None``.

    Args:
        di: the identifier (``0x00010000``; 1997 ``0x9010``).
        version: the protocol generation.

    Returns:
        The entry, or ``None`` when the identifier is not catalogued.
    """
    return (_BY_DI_2007 if version is V07 else _BY_DI_1997).get(di)


def lookup_di(di: int, version: Dlt645Version = Dlt645Version.V2007) -> DiSpec:
    """Return the catalogue entry for ``di``.

    Args:
        di: the identifier (``0x00010000``; 1997 ``0x9010``).
        version: the protocol generation.

    Returns:
        The entry.

    Raises:
        UnknownDataIdentifier: when the identifier is not catalogued for ``version``.
    """
    spec = find_di(di, version)
    if spec is None:
        width = 2 * di_size(version)
        raise UnknownDataIdentifier(f"DI {di:0{width}X} is not catalogued for {version.value}")
    return spec
