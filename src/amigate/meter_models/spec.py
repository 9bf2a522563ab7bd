"""The types a meter model definition loads into: frozen dataclasses, kinds and limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from amigate.codecs.modbus_values import register_count

PROTOCOLS = ("dlt645-2007", "dlt645-1997", "modbus")
UNITS = frozenset(
    {"kWh", "kvarh", "kVAh", "Wh", "V", "A", "kW", "W", "kvar", "var", "kVA", "VA", "Hz", "%",
     "°C", "min", ""}
)  # fmt: skip
MODBUS_DTYPES = ("uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
#: How a manual numbers registers: the wire address itself, 1-based, or Modicon style
#: (30001 + address for input registers, 40001 + address for holding registers).
MANUAL_NUMBERING = ("wire", "one-based", "modicon")
#: Largest block of registers one FC3/FC4 request may read (the Modbus limit).
MODBUS_MAX_BLOCK = 125


class PointKind(StrEnum):
    """What a point measures; drives how it is polled, stored and simulated."""

    ENERGY = "energy"  #: cumulative register (kWh, kvarh), never decreases in normal use
    INSTANTANEOUS = "instantaneous"  #: voltage, current, power, power factor, frequency
    DEMAND = "demand"  #: maximum demand
    CLOCK = "clock"  #: the meter's date or time
    IDENTITY = "identity"  #: communication address, meter number
    STATUS = "status"  #: status words
    DAILY_FREEZE = "daily_freeze"  #: registers frozen at midnight, indexed back in time
    LOAD_PROFILE = "load_profile"  #: interval records kept in meter memory


class Poll(StrEnum):
    """Read-plan hint: when a poller reads the point."""

    CYCLE = "cycle"  #: every poll cycle
    DAILY = "daily"  #: once a day
    BACKFILL = "backfill"  #: only to fill gaps, walking back through meter memory
    ON_DEMAND = "on_demand"  #: only when asked (identity, diagnostics)


@dataclass(frozen=True, kw_only=True)
class DataId:
    """Where a point lives on a DL/T 645 meter.

    Attributes:
        di: the data identifier (``0x00010000``; two bytes for 1997).
        width: 4 bytes (2007) or 2 bytes (1997).
        indexed: the lowest byte is a history index ``NN`` (1 = most recent).
        depth: how far back ``NN`` goes (0 when not indexed).
    """

    di: int
    width: int = 4
    indexed: bool = False
    depth: int = 0

    def at(self, index: int = 1) -> int:
        """Return the DI to read, with ``index`` in the low byte for indexed points.

        Raises:
            ValueError: ``index`` is outside 1..depth for an indexed point.
        """
        if not self.indexed:
            return self.di
        if not 1 <= index <= self.depth:
            raise ValueError(f"history index {index} is outside 1..{self.depth}")
        return self.di | index

    @property
    def hex(self) -> str:
        """The DI as written in definitions (``050601NN`` for indexed points)."""
        digits = f"{self.di:0{self.width * 2}X}"
        return digits[:-2] + "NN" if self.indexed else digits


@dataclass(frozen=True, kw_only=True)
class Register:
    """Where a point lives on a Modbus meter.

    Attributes:
        function: 3 (read holding registers) or 4 (read input registers).
        address: the 0-based wire address of the first register.
        dtype: the data type (``float32``, ``int32``, ``uint64``, ...).
        word_order: ``big`` (high word first, ABCD) or ``little`` (CDAB).
        scale: raw number times ``scale`` gives the point's unit.
        manual: the register number as the meter's manual prints it (``"30073"``,
            ``"3204"``, ``"0x5B00"``), for people comparing with the manual.
        sentinels: raw values that mean "not available".
    """

    function: int
    address: int
    dtype: str
    word_order: str = "big"
    scale: Decimal = Decimal(1)
    manual: str | None = None
    sentinels: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        """Registers the value occupies."""
        return register_count(self.dtype)

    @property
    def end(self) -> int:
        """The address after the value's last register."""
        return self.address + self.count


@dataclass(frozen=True, kw_only=True)
class ModbusSpec:
    """How a Modbus model may be read.

    Attributes:
        max_block: the most registers the meter accepts in one request.
        max_gap: the most unused registers a block may read across between two
            points (0: the meter rejects reads that touch registers it does not define).
        manual_numbering: how the manual numbers registers (see ``MANUAL_NUMBERING``).
        not_available: ``max`` when the largest value of an integer type means "not
            available" (ABB), ``none`` otherwise.
    """

    max_block: int = 50
    max_gap: int = 0
    manual_numbering: str = "wire"
    not_available: str = "none"


@dataclass(frozen=True, kw_only=True)
class PointSpec:
    """One quantity a meter model offers."""

    channel: str
    kind: PointKind
    unit: str
    source: DataId | Register
    name: str = ""
    phase: str | None = None
    tariff: int | None = None
    poll: Poll = Poll.CYCLE
    description: str = ""
    unconfirmed: bool = False


@dataclass(frozen=True, kw_only=True)
class RatedValues:
    """Nameplate values."""

    voltage_v: Decimal
    current_a: Decimal
    max_current_a: Decimal
    frequency_hz: Decimal = Decimal(50)
    meter_constant: int | None = None


@dataclass(frozen=True, kw_only=True)
class SerialDefaults:
    """The line settings the model ships with."""

    baud: int = 2400
    parity: str = "E"
    bytesize: int = 8
    stopbits: int = 1


@dataclass(frozen=True, kw_only=True)
class MemorySpec:
    """What the meter remembers, for backfill."""

    load_profile_interval_min: int = 15
    load_profile_days: int = 0
    daily_freezes: int = 0


@dataclass(frozen=True, kw_only=True)
class MeterModel:
    """A meter model, as its definition file describes it."""

    id: str
    protocol: str
    description: str
    phases: int
    tariffs: int
    rated: RatedValues
    serial: SerialDefaults
    memory: MemorySpec
    points: tuple[PointSpec, ...]
    path: Path
    modbus: ModbusSpec | None = None

    def point(self, channel: str, kind: PointKind | None = None) -> PointSpec:
        """Return the point for ``channel`` (and ``kind``, when several kinds share it).

        Raises:
            KeyError: the model has no such point.
        """
        for point in self.points:
            if point.channel == channel and (kind is None or point.kind == kind):
                return point
        raise KeyError(f"model {self.id} has no point {channel!r}")

    def by_kind(self, kind: PointKind) -> tuple[PointSpec, ...]:
        """Return the points of one kind, in file order."""
        return tuple(p for p in self.points if p.kind == kind)

    @property
    def dlt645_version(self) -> str | None:
        """``"2007"`` or ``"1997"`` for DL/T 645 models, ``None`` otherwise."""
        return self.protocol.removeprefix("dlt645-") if self.protocol.startswith("dlt645") else None
