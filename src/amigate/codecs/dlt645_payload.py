"""DL/T 645 reply payloads: catalogued values, tariff blocks and load-profile records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final, NamedTuple, TypeAlias

from amigate.codecs.dlt645_catalogue import (
    LOAD_PROFILE_CLASSES,
    LOAD_PROFILE_TIME,
    Category,
    DiSpec,
    FieldSpec,
)
from amigate.codecs.dlt645_values import (
    Value,
    ValueKind,
    decode_value,
    encode_value,
    number_from_hex,
    stamp_from_hex,
)
from amigate.errors import DataError

__all__ = ["DataValue", "decode_values", "encode_fields", "encode_load_record", "value_to_json"]

_LOAD_START: Final = b"\xa0\xa0"
_LOAD_INVALID: Final = b"\xe0\xe0"
_LOAD_SEPARATOR: Final = 0xAA
_LOAD_END: Final = 0xE5


class DataValue(NamedTuple):
    """One decoded value of a reply (an immutable named tuple).

    Attributes:
        name: what the value is.
        value: exact number, stamp, text, or ``None`` when the meter has no value.
        unit: unit string, or ``None``.
        channel: normalized OBIS-style channel code, or ``None``.
    """

    name: str
    value: Value
    unit: str | None
    channel: str | None




def encode_fields(
    fields: Sequence[FieldSpec], values: Sequence[Value | int] | Mapping[str, Value | int]
) -> bytes:
    if isinstance(values, Mapping):
        ordered = [values.get(f.name, values.get(f.channel or "", None)) for f in fields]
    else:
        ordered = list(values)
    return b"".join(
        encode_value(v, f.value_format, signed=f.signed)
        for f, v in zip(fields, ordered, strict=True)
    )


def encode_load_record(when: datetime, classes: Mapping[int, Sequence[Value | int]]) -> bytes:
    """Encode one load-profile record (for the simulator).

    Args:
        when: the record time.
        classes: class number (1..6) -> values in `LOAD_PROFILE_CLASSES` order;
            classes left out get only their separator.

    Returns:
        ``A0 A0 n YYMMDDhhmm class.. AA .. CS E5`` as plain bytes.
    """
    body = bytearray(encode_value(when, LOAD_PROFILE_TIME.value_format))
    for number, fields in enumerate(LOAD_PROFILE_CLASSES, start=1):
        if number in classes:
            body += encode_fields(fields, classes[number])
        body.append(_LOAD_SEPARATOR)
    record = _LOAD_START + bytes((len(body),)) + body
    return record + bytes((sum(record) & 0xFF, _LOAD_END))


def _decode_load_profile(payload: bytes, spec: DiSpec) -> tuple[DataValue, ...]:
    """Decode load-profile records: ``A0 A0 n time [class AA]x6 CS E5``, possibly repeated."""
    only = (spec.di >> 16) & 0xFF
    classes = range(1, 7) if only == 0 else (only,)
    out: list[DataValue] = []
    pos = 0
    while pos < len(payload):
        head = payload[pos : pos + 2]
        if head not in (_LOAD_START, _LOAD_INVALID):
            raise DataError(f"load record at byte {pos} starts with {head.hex()} instead of a0a0")
        cursor = pos + 3
        record_values = [_value(LOAD_PROFILE_TIME, payload[cursor : cursor + 5])]
        cursor += 5
        for number in classes:
            if payload[cursor : cursor + 1] == b"\xaa":
                cursor += 1
                continue
            for f in LOAD_PROFILE_CLASSES[number - 1]:
                record_values.append(_value(f, payload[cursor : cursor + f.length]))
                cursor += f.length
            if payload[cursor : cursor + 1] != b"\xaa":
                raise DataError(f"load record class {number} not followed by the AA separator")
            cursor += 1
        if cursor + 2 > len(payload) or payload[cursor + 1] != _LOAD_END:
            raise DataError("load record does not end with CS E5")
        computed = sum(payload[pos:cursor]) & 0xFF
        if computed != payload[cursor]:
            raise DataError(f"load record checksum mismatch: computed 0x{computed:02X}, "
                            f"record has 0x{payload[cursor]:02X}")
        if head == _LOAD_START:
            out.extend(record_values)
        pos = cursor + 2
    return tuple(out)


def _value(f: FieldSpec, raw: bytes) -> DataValue:
    return DataValue(f.name, decode_value(raw, f.value_format, signed=f.signed), f.unit, f.channel)


# --- compiled reply decoders ------------------------------------------------------------
#
# A payload is turned into hex once, reversed, so that every item's BCD digits are a
# slice in reading order (most significant first). Per catalogue entry and payload
# length the layout is compiled once into plain tuples (`_Plan`); decoding then runs
# one loop with no per-field function layers. Numbers become
# ``Decimal("<digits>E-<decimals>")``, the fastest exact construction measured (the
# same value and exponent as ``"<int>.<fraction>"``).

_STAMP_KINDS: Final = frozenset(
    (ValueKind.DATETIME, ValueKind.DATE, ValueKind.TIME, ValueKind.MONTH_TIME)
)
_NUMBER: Final = 0  # packed BCD number
_STAMP: Final = 1  # date/time kinds
_OTHER: Final = 2  # digits, text, status bits: decode_value on the raw bytes

#: A number: text start, text end, Decimal exponent suffix, signed, name, unit, channel.
_NumberStep: TypeAlias = tuple[int, int, str, bool, str, "str | None", "str | None"]
#: Any field: text start, text end, kind, suffix, decimals, signed, name, unit, channel,
#: payload offset, field spec.
_Step: TypeAlias = tuple[
    int, int, int, str, int, bool, str, "str | None", "str | None", int, FieldSpec
]
#: payload[reverse].hex() gives the text; ``numbers`` is set when every field is a number.
_Plan: TypeAlias = tuple[slice, "tuple[_NumberStep, ...] | None", tuple[_Step, ...]]

_new = tuple.__new__


def _compile(fields: tuple[FieldSpec, ...]) -> _Plan:
    """Compile a layout into a `_Plan`."""
    size = sum(f.length for f in fields)
    width = 2 * size
    steps: list[_Step] = []
    offset = 0
    for f in fields:
        end = width - 2 * offset
        kind = f.value_format.kind
        code = (_NUMBER if kind is ValueKind.NUMBER
                else _STAMP if kind in _STAMP_KINDS else _OTHER)
        suffix = f"E-{f.decimals}" if f.decimals > 0 else ""
        steps.append((end - 2 * f.length, end, code, suffix, f.decimals, f.signed, f.name,
                      f.unit, f.channel, offset, f))
        offset += f.length
    numbers = None
    if steps and all(step[2] == _NUMBER for step in steps):
        numbers = tuple((a, b, suffix, signed, name, unit, channel)
                        for a, b, _, suffix, _, signed, name, unit, channel, _, _ in steps)
    return slice(size - 1, None, -1) if size else slice(0, 0), numbers, tuple(steps)


def _decode_steps(steps: tuple[_Step, ...], text: str, payload: bytes) -> tuple[DataValue, ...]:
    """Decode field by field: fillers, invalid digits and non-numeric fields."""
    out: list[DataValue] = []
    append = out.append
    for start, end, code, suffix, decimals, signed, name, unit, channel, offset, f in steps:
        chunk = text[start:end]
        value: Value
        if code == _NUMBER:
            if chunk.isdigit() and not (signed and chunk[0] > "7"):
                value = Decimal(chunk + suffix)
            else:
                value = number_from_hex(chunk, decimals, signed)
        elif code == _STAMP:
            value = stamp_from_hex(chunk, f.value_format)
        else:
            value = decode_value(payload[offset : offset + f.length], f.value_format,
                                 signed=signed)
        append(_new(DataValue, (name, value, unit, channel)))
    return tuple(out)


def decode_values(spec: DiSpec, payload: bytes) -> tuple[DataValue, ...]:
    """Decode the payload of a catalogued identifier into values.

    Args:
        spec: the catalogue entry.
        payload: bytes after the DI.

    Returns:
        The values in reply order.

    Raises:
        DataError: wrong length, invalid BCD or an impossible date.
    """
    plan: _Plan | None = spec.decoders.get(len(payload))
    if plan is None:
        if spec.category is Category.LOAD_PROFILE:
            return _decode_load_profile(payload, spec)
        plan = _compile(spec.layout(len(payload)))  # raises on a length that does not fit
        spec.decoders[len(payload)] = plan  # at most 256 lengths per entry
    reverse, numbers, steps = plan
    text = payload[reverse].hex()
    if numbers is None or not text.isdigit():
        return _decode_steps(steps, text, payload)
    if len(numbers) == 1:
        _, _, suffix, signed, name, unit, channel = numbers[0]
        if signed and text[0] > "7":
            text = f"-{int(text[0]) - 8}{text[1:]}"
        return (_new(DataValue, (name, Decimal(text + suffix), unit, channel)),)
    out: list[DataValue] = []
    append = out.append
    for start, end, suffix, signed, name, unit, channel in numbers:
        digits = text[start:end]
        if signed and digits[0] > "7":  # sign bit set: 8 -> "-0", 9 -> "-1"
            digits = f"-{int(digits[0]) - 8}{digits[1:]}"
        append(_new(DataValue, (name, Decimal(digits + suffix), unit, channel)))
    return tuple(out)


def value_to_json(value: Value) -> str | None:
    """Render a value for JSON: numbers and stamps as strings, ``None`` stays ``None``.

    Args:
        value: a decoded value.

    Returns:
        The text form.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
