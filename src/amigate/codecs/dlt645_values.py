"""DL/T 645 values: packed BCD with implied decimals, sign bit, date/time fields, fillers."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final, TypeAlias

from amigate.errors import DataError

__all__ = [
    "FILLER_BYTES",
    "Value",
    "ValueFormat",
    "ValueKind",
    "decode_bcd_number",
    "decode_value",
    "encode_bcd_number",
    "encode_value",
    "number_from_hex",
    "stamp_from_hex",
    "value_format",
]

#: A decoded data item. Dates without a time are a datetime at midnight; a time
#: of day is ``"hh:mm:ss"``; a month/day time without year is ``"MM-DD hh:mm"``.
Value: TypeAlias = Decimal | datetime | str | None

#: Bytes (after removing 33H) that fill a whole item the meter cannot provide.
FILLER_BYTES: Final = (0xFF, 0xEE)


class ValueKind(enum.Enum):
    """How the bytes of a data item are to be read."""

    NUMBER = "number"  # packed BCD, implied decimal point -> Decimal
    DATETIME = "datetime"  # BCD date and time fields -> datetime
    DATE = "date"  # YYMMDDWW -> datetime at midnight
    TIME = "time"  # hhmmss -> "hh:mm:ss"
    MONTH_TIME = "month_time"  # MMDDhhmm -> "MM-DD hh:mm"
    DIGITS = "digits"  # BCD digit string (address, meter number) -> str
    ASCII = "ascii"  # text, sent last character first -> str
    BITS = "bits"  # status word, not BCD -> hex str, most significant first


# Date/time layouts: field order as written (most significant first) -> kind.
_TIME_PATTERNS: Final[dict[str, ValueKind]] = {
    "YYMMDDhhmmss": ValueKind.DATETIME,
    "YYMMDDhhmm": ValueKind.DATETIME,
    "YYMMDDWWhhmmss": ValueKind.DATETIME,
    "YYMMDDWW": ValueKind.DATE,
    "hhmmss": ValueKind.TIME,
    "MMDDhhmm": ValueKind.MONTH_TIME,
}


@dataclass(frozen=True, slots=True)
class ValueFormat:
    """A parsed format such as ``XXXXXX.XX`` or ``YYMMDDhhmm``.

    Attributes:
        pattern: the format as the standard writes it.
        kind: how to read the bytes.
        length: bytes on the wire.
        decimals: digits after the implied decimal point (numbers only).
    """

    pattern: str
    kind: ValueKind
    length: int
    decimals: int = 0

    @property
    def scale(self) -> Decimal:
        """The value of one unit in the last digit, e.g. ``Decimal("0.01")``."""
        return Decimal(1).scaleb(-self.decimals)


@functools.cache
def value_format(pattern: str, kind: ValueKind | None = None) -> ValueFormat:
    """Parse a format string.

    ``X``/``N`` digit patterns with an optional ``.`` are numbers; the date/time
    layouts are recognised by name; ``kind`` overrides the guess (for example
    ``NNNNNNNNNNNN`` read as `ValueKind.DIGITS`). ASCII and BITS patterns give
    their byte length in parentheses: ``ASCII(32)``, ``BITS(2)``.

    Args:
        pattern: the format.
        kind: explicit kind, when the pattern alone is ambiguous.

    Returns:
        The parsed format.

    Raises:
        ValueError: on a pattern this module cannot handle.
    """
    if pattern in _TIME_PATTERNS:
        return ValueFormat(pattern, kind or _TIME_PATTERNS[pattern], len(pattern) // 2)
    if pattern.endswith(")") and "(" in pattern:
        name, _, size = pattern[:-1].partition("(")
        return ValueFormat(pattern, kind or ValueKind[name], int(size))
    digits = pattern.replace(".", "")
    if not digits or set(digits) - {"X", "N"} or pattern.count(".") > 1:
        raise ValueError(f"unsupported value format {pattern!r}")
    decimals = len(pattern) - pattern.index(".") - 1 if "." in pattern else 0
    # An odd digit count (1997 voltage "XXX") leaves the top nibble unused.
    return ValueFormat(pattern, kind or ValueKind.NUMBER, (len(digits) + 1) // 2, decimals)


def _is_filler(raw: bytes) -> bool:
    first = raw[0]
    return first in FILLER_BYTES and raw.count(first) == len(raw)


def _bcd_digits(raw: bytes) -> str:
    """Return the BCD digits of ``raw`` (least significant byte first) as a string.

    Raises:
        DataError: when a nibble is not a decimal digit.
    """
    text = raw[::-1].hex()
    if not text.isdigit():
        raise DataError(f"invalid BCD: bytes {raw.hex(' ').upper()} hold a nibble above 9")
    return text


def number_from_hex(text: str, decimals: int, signed: bool) -> Decimal | None:
    """Decode BCD digits already in reading order (most significant first).

    This is the hot path of reply decoding: the caller turns a whole payload into
    hex once and slices it per item.

    Args:
        text: lower-case hex digits of the item, most significant first.
        decimals: implied digits after the decimal point.
        signed: whether the top bit is a sign (1 = negative).

    Returns:
        The exact value, or ``None`` for an all-FF or all-EE filler.

    Raises:
        DataError: on a nibble above 9.
    """
    negative = False
    if not text.isdigit():
        first = text[0]
        if first in "fe" and text.count(first) == len(text):
            return None
        if not (signed and first > "7" and text[1:].isdigit()):
            raise DataError(f"invalid BCD: digits {text.upper()} hold a nibble above 9")
        negative = True
        text = f"{int(first, 16) - 8}{text[1:]}"
    elif signed and text[0] > "7":
        negative = True
        text = f"{int(text[0]) - 8}{text[1:]}"
    if decimals:
        text = f"{text[:-decimals]}.{text[-decimals:]}"
    return Decimal(f"-{text}" if negative else text)


def decode_bcd_number(raw: bytes, decimals: int, *, signed: bool = False) -> Decimal | None:
    """Decode a packed BCD number, least significant byte first.

    Args:
        raw: the plain bytes (33H already removed).
        decimals: implied digits after the decimal point.
        signed: whether bit 7 of the most significant byte is a sign (1 = negative).

    Returns:
        The exact value, or ``None`` when every byte is a filler (FFH or EEH).

    Raises:
        DataError: on an empty item or a non-decimal nibble.
    """
    if not raw:
        raise DataError("empty data item")
    return number_from_hex(raw[::-1].hex(), decimals, signed)


def encode_bcd_number(
    value: Decimal | int, length: int, decimals: int, *, signed: bool = False
) -> bytes:
    """Encode a number as packed BCD, least significant byte first.

    The value is rounded half-even to the format's resolution, as a meter would.

    Args:
        value: the number.
        length: bytes on the wire.
        decimals: implied digits after the decimal point.
        signed: whether a negative value may be sent with the sign bit.

    Returns:
        The plain bytes (before the 33H offset).

    Raises:
        DataError: a value that does not fit, or a negative value for an unsigned item.
    """
    try:
        scaled = int(Decimal(value).scaleb(decimals).to_integral_value(ROUND_HALF_EVEN))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise DataError(f"cannot encode {value!r} as a BCD number") from exc
    negative = scaled < 0
    if negative and not signed:
        raise DataError(f"{value} is negative but the item is unsigned")
    magnitude = -scaled if negative else scaled
    limit = 8 * 10 ** (2 * length - 1) if signed else 10 ** (2 * length)
    if magnitude >= limit:
        raise DataError(f"{value} does not fit in {length} BCD bytes with {decimals} decimals")
    out = bytearray(bytes.fromhex(f"{magnitude:0{2 * length}d}")[::-1])
    if negative:
        out[-1] |= 0x80
    return bytes(out)


def _decode_time(raw: bytes, fmt: ValueFormat) -> Value:
    if _is_filler(raw) or (fmt.kind is not ValueKind.TIME and not any(raw)):
        return None  # all-zero stamps mean "never happened" in event and demand records
    text = _bcd_digits(raw)
    pattern = fmt.pattern
    fields = {pattern[i : i + 2]: int(text[i : i + 2]) for i in range(0, len(pattern), 2)}
    try:
        if fmt.kind is ValueKind.TIME:
            stamp = datetime(2000, 1, 1, fields["hh"], fields["mm"], fields["ss"])
            return stamp.strftime("%H:%M:%S")
        if fmt.kind is ValueKind.MONTH_TIME:
            stamp = datetime(2000, fields["MM"], fields["DD"], fields["hh"], fields["mm"])
            return stamp.strftime("%m-%d %H:%M")
        return datetime(
            2000 + fields["YY"],
            fields["MM"],
            fields["DD"],
            fields.get("hh", 0),
            fields.get("mm", 0),
            fields.get("ss", 0),
        )
    except ValueError as exc:
        raise DataError(f"invalid {pattern} value {text}: {exc}") from exc


_TWO_DIGITS: Final = {f"{i:02d}": i for i in range(100)}


def stamp_from_hex(text: str, fmt: ValueFormat) -> Value:
    """Decode a date/time item from its BCD digits already in reading order.

    The reply decoder's hot path for dates and times. Whatever is not a plain valid
    stamp (fillers, all-zero stamps, bad nibbles, impossible dates, month/day
    times) goes through `decode_value`, which gives the same result or error.

    Args:
        text: lower-case hex digits of the item, most significant first.
        fmt: the item's format (a date/time kind).

    Returns:
        The value, exactly as `decode_value` returns it.

    Raises:
        DataError: invalid BCD or an impossible date.
    """
    kind = fmt.kind
    if text.isdigit():
        if kind is ValueKind.TIME:
            if text[:2] < "24" and text[2] < "6" and text[4] < "6":
                return f"{text[:2]}:{text[2:4]}:{text[4:6]}"
        elif text.count("0") != len(text):
            two = _TWO_DIGITS
            try:
                if kind is ValueKind.DATE:
                    return datetime(2000 + two[text[:2]], two[text[2:4]], two[text[4:6]])
                if kind is ValueKind.DATETIME:
                    at = 8 if fmt.pattern[6] == "W" else 6  # YYMMDDWWhhmmss
                    return datetime(
                        2000 + two[text[:2]], two[text[2:4]], two[text[4:6]],
                        two[text[at : at + 2]], two[text[at + 2 : at + 4]],
                        two[text[at + 4 : at + 6]] if len(text) > at + 4 else 0,
                    )
            except ValueError:
                pass  # decode_value raises the DataError
    return decode_value(bytes.fromhex(text)[::-1], fmt)


def decode_value(raw: bytes, fmt: ValueFormat, *, signed: bool = False) -> Value:
    """Decode one data item.

    Args:
        raw: exactly ``fmt.length`` plain bytes.
        fmt: the item's format.
        signed: sign-bit convention for numbers.

    Returns:
        The value; ``None`` for a filler.

    Raises:
        DataError: wrong size, invalid BCD or an impossible date.
    """
    if len(raw) != fmt.length:
        raise DataError(f"{fmt.pattern} needs {fmt.length} bytes, got {len(raw)}")
    kind = fmt.kind
    if kind is ValueKind.NUMBER:
        return decode_bcd_number(raw, fmt.decimals, signed=signed)
    if kind is ValueKind.DIGITS:
        return None if _is_filler(raw) else _bcd_digits(raw)
    if kind is ValueKind.BITS:
        return raw[::-1].hex().upper()
    if kind is ValueKind.ASCII:
        return raw[::-1].decode("ascii", errors="replace").strip("\x00 ")
    return _decode_time(raw, fmt)


def _time_digits(value: datetime | str, fmt: ValueFormat) -> str:
    if isinstance(value, str):
        try:
            value = (
                datetime.strptime(value, "%H:%M:%S")
                if fmt.kind is ValueKind.TIME
                else datetime.strptime(f"2000-{value}", "%Y-%m-%d %H:%M")
            )
        except ValueError as exc:
            raise DataError(f"cannot encode {value!r} as {fmt.pattern}") from exc
    if not 2000 <= value.year <= 2099 and "YY" in fmt.pattern:
        raise DataError(f"year {value.year} cannot be sent as YY")
    parts = {
        "YY": value.year % 100,
        "MM": value.month,
        "DD": value.day,
        "WW": value.isoweekday() % 7,  # 0 = Sunday
        "hh": value.hour,
        "mm": value.minute,
        "ss": value.second,
    }
    pattern = fmt.pattern
    return "".join(f"{parts[pattern[i : i + 2]]:02d}" for i in range(0, len(pattern), 2))


def encode_value(value: Value | int, fmt: ValueFormat, *, signed: bool = False) -> bytes:
    """Encode one data item; ``None`` becomes the FFH filler.

    Args:
        value: the value, of the type `decode_value` returns (ints are accepted for numbers).
        fmt: the item's format.
        signed: sign-bit convention for numbers.

    Returns:
        ``fmt.length`` plain bytes.

    Raises:
        DataError: a value of the wrong type or out of range.
    """
    if value is None:
        return b"\xff" * fmt.length
    kind = fmt.kind
    if kind is ValueKind.NUMBER:
        if isinstance(value, Decimal | int) and not isinstance(value, bool):
            return encode_bcd_number(value, fmt.length, fmt.decimals, signed=signed)
        raise DataError(f"{fmt.pattern} needs a Decimal or int, got {value!r}")
    if kind in (ValueKind.DIGITS, ValueKind.BITS):
        text = str(value)
        width = 2 * fmt.length
        if len(text) != width or (kind is ValueKind.DIGITS and not text.isdigit()):
            raise DataError(f"{fmt.pattern} needs {width} digits, got {text!r}")
        try:
            return bytes.fromhex(text)[::-1]
        except ValueError as exc:
            raise DataError(f"{fmt.pattern} needs hex digits, got {text!r}") from exc
    if kind is ValueKind.ASCII:
        encoded = str(value).encode("ascii", errors="replace")
        if len(encoded) > fmt.length:
            raise DataError(f"{value!r} is longer than {fmt.length} characters")
        return encoded.ljust(fmt.length, b"\x00")[::-1]
    if not isinstance(value, datetime | str):
        raise DataError(f"{fmt.pattern} needs a datetime, got {value!r}")
    return bytes.fromhex(_time_digits(value, fmt))[::-1]
