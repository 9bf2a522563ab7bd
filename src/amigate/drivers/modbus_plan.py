"""Block-read planning and decoding for Modbus meter models (no I/O, no pymodbus).

A whole-meter poll becomes as few FC3/FC4 requests as the model allows: points of
the same function are coalesced into blocks no longer than the model's
``max_block`` registers, reading across at most ``max_gap`` unused registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from amigate.codecs.modbus_values import decode_value
from amigate.errors import ConfigError
from amigate.meter_models import MeterModel, ModbusSpec, PointSpec, Register

__all__ = [
    "Block",
    "PointValue",
    "decode_block",
    "normalize",
    "plan_blocks",
    "register_of",
]

#: Meter units converted to the units channels are stored in.
_CANONICAL: dict[str, tuple[str, Decimal]] = {
    "Wh": ("kWh", Decimal("0.001")),
    "W": ("kW", Decimal("0.001")),
    "var": ("kvar", Decimal("0.001")),
    "VA": ("kVA", Decimal("0.001")),
}
#: Stored values keep at most this many decimal places (micro-units, see ``domain``).
_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers from ``address`` with ``function``.

    Attributes:
        function: 3 or 4.
        address: the first wire address.
        count: registers to read.
        points: the points the block covers, in address order.
    """

    function: int
    address: int
    count: int
    points: tuple[PointSpec, ...]


@dataclass(frozen=True, slots=True)
class PointValue:
    """A point's value as read, normalized to its channel's unit.

    Attributes:
        channel: the normalized channel (OBIS-style code).
        name: the point's name in the model.
        value: the value, or None when missing.
        unit: the channel's unit (``kWh``, ``kW``, ``V``, ``A``, ``Hz``, ``""``).
        missing: why ``value`` is None: ``not_available`` (the meter said so) or
            ``unsupported`` (the meter answered exception 2 for this register).
    """

    channel: str
    name: str
    value: Decimal | None
    unit: str
    missing: str | None = None
    kind: str = "instantaneous"

    @property
    def key(self) -> tuple[str, str]:
        """(channel, kind): what identifies a point within a model."""
        return (self.channel, self.kind)


def register_of(point: PointSpec) -> Register:
    """Return the Modbus register of ``point``.

    Raises:
        ConfigError: the point is not a Modbus point.
    """
    if not isinstance(point.source, Register):
        raise ConfigError(f"point {point.channel} is not a Modbus register")
    return point.source


def plan_blocks(
    points: Iterable[PointSpec], spec: ModbusSpec, *, single: bool = False
) -> list[Block]:
    """Coalesce points into read requests.

    Args:
        points: the points to read (Modbus points only).
        spec: the model's limits (``max_block``, ``max_gap``).
        single: one request per point instead (for comparison and for isolating
            the point a meter rejects).

    Returns:
        Blocks in (function, address) order.

    Raises:
        ConfigError: a point is not a Modbus point.
    """
    ordered = sorted(points, key=lambda p: (register_of(p).function, register_of(p).address))
    blocks: list[Block] = []
    current: list[PointSpec] = []
    for point in ordered:
        reg = register_of(point)
        if current and not single:
            first, last = register_of(current[0]), register_of(current[-1])
            if (
                reg.function == first.function
                and reg.address - last.end <= spec.max_gap
                and reg.end - first.address <= spec.max_block
            ):
                current.append(point)
                continue
        if current:
            blocks.append(_block(current))
        current = [point]
    if current:
        blocks.append(_block(current))
    return blocks


def _block(points: Sequence[PointSpec]) -> Block:
    first = register_of(points[0])
    end = max(register_of(p).end for p in points)
    return Block(first.function, first.address, end - first.address, tuple(points))


def normalize(value: Decimal | None, unit: str) -> tuple[Decimal | None, str]:
    """Convert a value in a meter unit to its channel unit (Wh → kWh, W → kW).

    Values keep at most six decimal places, what storage holds exactly.
    """
    target, factor = _CANONICAL.get(unit, (unit, Decimal(1)))
    if value is None:
        return None, target
    value *= factor
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        value = value.quantize(_QUANTUM)
    return value, target


def decode_block(block: Block, registers: Sequence[int]) -> list[PointValue]:
    """Decode every point of ``block`` from the registers read for it.

    Args:
        block: the block that was read.
        registers: the words the meter returned (``block.count`` of them).

    Returns:
        One value per point, normalized; sentinels and NaN become missing values.

    Raises:
        DataError: a value does not decode.
    """
    out = []
    for point in block.points:
        reg = register_of(point)
        offset = reg.address - block.address
        words = registers[offset : offset + reg.count]
        raw = decode_value(
            words, reg.dtype, reg.word_order, scale=reg.scale, sentinels=reg.sentinels
        )
        value, unit = normalize(raw, point.unit)
        missing = "not_available" if value is None else None
        out.append(PointValue(point.channel, point.name, value, unit, missing, point.kind.value))
    return out


def modbus_points(model: MeterModel) -> tuple[PointSpec, ...]:
    """Return the model's Modbus points.

    Raises:
        ConfigError: the model is not a Modbus model.
    """
    if model.modbus is None:
        raise ConfigError(f"model {model.id} is a {model.protocol} model, not a Modbus one")
    return tuple(p for p in model.points if isinstance(p.source, Register))
