"""Modbus register values: 16-bit words to numbers and back (word order, sign, scale).

Pure functions over lists of register words, as a Modbus client returns them.
Bytes inside a word are big-endian (the Modbus convention); multi-word values are
sent high word first (``big``, ABCD: Eastron, Chint, Schneider, ABB, Acrel) or
low word first (``little``, CDAB: Carlo Gavazzi).

"Not available" sentinels (ABB's all-``FF`` unsigned and ``7FFF…`` signed values,
a NaN float) decode to ``None``, never to a number.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal

from amigate.errors import DataError

__all__ = [
    "DTYPES",
    "WORD_ORDERS",
    "decode_number",
    "decode_value",
    "encode_number",
    "encode_value",
    "max_sentinel",
    "register_count",
    "value_resolution",
]

#: Registers per data type.
DTYPES: dict[str, int] = {
    "uint16": 1,
    "int16": 1,
    "uint32": 2,
    "int32": 2,
    "uint64": 4,
    "int64": 4,
    "float32": 2,
    "float64": 4,
}
WORD_ORDERS = ("big", "little")
_FLOAT_FORMAT = {"float32": ">f", "float64": ">d"}


def register_count(dtype: str) -> int:
    """Return how many 16-bit registers a value of ``dtype`` occupies.

    Raises:
        DataError: unknown data type.
    """
    try:
        return DTYPES[dtype]
    except KeyError:
        raise DataError(f"unknown Modbus data type {dtype!r}") from None


def _check(dtype: str, word_order: str) -> int:
    count = register_count(dtype)
    if word_order not in WORD_ORDERS:
        raise DataError(f"word order {word_order!r} is not big or little")
    return count


def _raw_bytes(registers: Sequence[int], dtype: str, word_order: str) -> bytes:
    count = _check(dtype, word_order)
    if len(registers) != count:
        raise DataError(f"{dtype} needs {count} register(s), got {len(registers)}")
    if any(not 0 <= word <= 0xFFFF for word in registers):
        raise DataError(f"register words must be within 0..65535: {list(registers)}")
    words = list(registers) if word_order == "big" else list(reversed(registers))
    return b"".join(word.to_bytes(2, "big") for word in words)


def decode_number(registers: Sequence[int], dtype: str, word_order: str = "big") -> int | float:
    """Decode the raw number held in ``registers`` (no scale, no sentinel check).

    Args:
        registers: the words as read, in wire order.
        dtype: ``uint16``, ``int16``, ``uint32``, ``int32``, ``uint64``, ``int64``,
            ``float32`` or ``float64``.
        word_order: ``big`` (high word first) or ``little`` (low word first).

    Returns:
        An int for integer types, a float for float types.

    Raises:
        DataError: wrong number of registers, a word out of range, unknown type or order.
    """
    raw = _raw_bytes(registers, dtype, word_order)
    if dtype in _FLOAT_FORMAT:
        value: float = struct.unpack(_FLOAT_FORMAT[dtype], raw)[0]
        return value
    return int.from_bytes(raw, "big", signed=dtype.startswith("int"))


def max_sentinel(dtype: str) -> int | None:
    """Return the "not available" raw value of an integer type: its largest value.

    ``0xFFFF…`` for unsigned and ``0x7FFF…`` for signed types (ABB's convention);
    ``None`` for floats, whose sentinel is NaN.
    """
    if dtype in _FLOAT_FORMAT:
        return None
    bits = 16 * register_count(dtype)
    return (1 << (bits - 1)) - 1 if dtype.startswith("int") else (1 << bits) - 1


def _float_decimal(value: float, dtype: str) -> Decimal:
    """The shortest decimal that encodes to the same float (``230.1``, not ``230.100006``)."""
    if dtype == "float64":
        return Decimal(repr(value))
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if struct.pack(">f", float(text)) == packed:
                return Decimal(text)
        except OverflowError:  # rounded up past the largest float32
            continue
    return Decimal(repr(value))  # pragma: no cover - 9 significant digits always round-trip


def decode_value(
    registers: Sequence[int],
    dtype: str,
    word_order: str = "big",
    *,
    scale: Decimal = Decimal(1),
    sentinels: Iterable[int] = (),
) -> Decimal | None:
    """Decode a point's value: raw number times ``scale``, or None when not available.

    Args:
        registers: the words as read, in wire order.
        dtype: the data type (see :func:`decode_number`).
        word_order: ``big`` or ``little``.
        scale: the factor from the raw number to the point's unit.
        sentinels: raw integer values that mean "not available".

    Returns:
        The exact decimal value (floats as their shortest round-trip decimal), or
        None for a sentinel, a NaN or an infinite float.

    Raises:
        DataError: the registers do not fit the type.
    """
    number = decode_number(registers, dtype, word_order)
    if isinstance(number, float):
        if not math.isfinite(number):
            return None
        return _float_decimal(number, dtype) * scale
    if number in set(sentinels):
        return None
    return Decimal(number) * scale


def encode_number(number: int | float, dtype: str, word_order: str = "big") -> list[int]:
    """Encode a raw number into register words (the inverse of :func:`decode_number`).

    Raises:
        DataError: the number does not fit the type, or unknown type or order.
    """
    count = _check(dtype, word_order)
    if dtype in _FLOAT_FORMAT:
        try:
            raw = struct.pack(_FLOAT_FORMAT[dtype], float(number))
        except OverflowError:
            raise DataError(f"{number} does not fit {dtype}") from None
    else:
        if not isinstance(number, int):
            raise DataError(f"{dtype} needs an integer, got {number!r}")
        try:
            raw = number.to_bytes(2 * count, "big", signed=dtype.startswith("int"))
        except OverflowError:
            raise DataError(f"{number} does not fit {dtype}") from None
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return words if word_order == "big" else list(reversed(words))


def encode_value(
    value: Decimal, dtype: str, word_order: str = "big", *, scale: Decimal = Decimal(1)
) -> list[int]:
    """Encode a value in the point's unit: ``value / scale``, rounded for integer types.

    Raises:
        DataError: the value does not fit the type.
    """
    raw = value / scale
    if dtype in _FLOAT_FORMAT:
        return encode_number(float(raw), dtype, word_order)
    return encode_number(int(raw.to_integral_value()), dtype, word_order)


def value_resolution(value: Decimal, dtype: str, scale: Decimal = Decimal(1)) -> Decimal:
    """Return the step between adjacent representable values near ``value``.

    For integer types it is ``scale``; for floats it grows with the magnitude (a
    float32 kWh counter steps by about 1 Wh at 10 MWh and 62.5 Wh at 1 GWh).
    """
    if dtype not in _FLOAT_FORMAT:
        return abs(scale)
    mantissa = 23 if dtype == "float32" else 52
    raw = abs(float(value / scale)) or 1e-38
    exponent = math.frexp(raw)[1] - 1
    return Decimal(2.0 ** (exponent - mantissa)) * abs(scale)
