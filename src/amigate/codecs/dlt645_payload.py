"""DL/T 645 reply payloads: catalogued values, tariff blocks and load-profile records."""

from __future__ import annotations

import linecache
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Final, NamedTuple, TypeAlias

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

__all__ = [
    "DataValue",
    "Decoder",
    "decode_values",
    "encode_fields",
    "encode_load_record",
    "generate_decoder",
    "make_decoder",
    "reference_decoder",
    "value_to_json",
]

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
# Per catalogue entry and payload length, `decode_values` builds a decoder on first use
# and keeps it in ``spec.decoders``:
#
# * the reference decoder (`_compile` + `_decode_steps`) reads field by field and handles
#   every case: fillers, sign bits over a nibble above 9, all-zero stamps, digit strings,
#   text and status bits;
# * for layouts of numbers, dates and times, `_generate_source` writes a straight-line
#   decoder with the offsets, names, units and exponents as literals. It decodes the plain
#   case (every byte valid BCD, stamps that exist) and hands anything else to the
#   reference decoder, which returns the same values or raises the same error.
#
# Numbers become ``_CONTEXT.create_decimal("<digits>E-<decimals>")``, the fastest exact
# construction measured: the same value and exponent as ``Decimal("<int>.<fraction>")``,
# and faster than ``Decimal(text, context)``, ``Decimal(int).scaleb()`` or a digit tuple.

#: A payload decoder: the payload (bytes after the DI) -> its values in reply order.
Decoder: TypeAlias = Callable[[bytes], tuple[DataValue, ...]]

_STAMP_KINDS: Final = frozenset(
    (ValueKind.DATETIME, ValueKind.DATE, ValueKind.TIME, ValueKind.MONTH_TIME)
)
_NUMBER: Final = 0  # packed BCD number
_STAMP: Final = 1  # date/time kinds
_OTHER: Final = 2  # digits, text, status bits: decode_value on the raw bytes

#: Any field: text start, text end, kind, suffix, decimals, signed, name, unit, channel,
#: payload offset, field spec.
_Step: TypeAlias = tuple[
    int, int, int, str, int, bool, str, "str | None", "str | None", int, FieldSpec
]
#: payload[reverse].hex() gives the text the steps slice.
_Plan: TypeAlias = tuple[slice, tuple[_Step, ...]]

_new = tuple.__new__


def _compile(fields: tuple[FieldSpec, ...]) -> _Plan:
    """Compile a layout into a `_Plan` for the reference decoder."""
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
    return slice(size - 1, None, -1) if size else slice(0, 0), tuple(steps)


def _decode_steps(steps: tuple[_Step, ...], text: str, payload: bytes) -> tuple[DataValue, ...]:
    """Decode field by field: the reference for every layout and every payload."""
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


def reference_decoder(fields: tuple[FieldSpec, ...]) -> Decoder:
    """Return the field-by-field decoder of a layout (the generated decoders' fallback).

    Args:
        fields: the layout, as `DiSpec.layout` returns it.

    Returns:
        A function from payload to values; bytes after the layout are ignored.
    """
    reverse, steps = _compile(fields)

    def decode(payload: bytes) -> tuple[DataValue, ...]:
        return _decode_steps(steps, payload[reverse].hex(), payload)

    return decode


# Tables for the generated decoders, keyed by a plain byte and holding only valid BCD
# bytes: any other byte raises KeyError, which sends the payload to the reference.
_BCD: Final = {b: 10 * (b >> 4) + (b & 15) for b in range(256) if b >> 4 < 10 and b & 15 < 10}
_YEAR: Final = {b: 2000 + v for b, v in _BCD.items()}
#: For WW (day of week): must be BCD, carries nothing; passed to datetime as a 0 hour
#: (YYMMDDWW) or microsecond (YYMMDDWWhhmmss), the argument after the last field.
_ZERO: Final = dict.fromkeys(_BCD, 0)
_HOUR_COLON: Final = {b: f"{v:02d}:" for b, v in _BCD.items() if v < 24}
_MINUTE_COLON: Final = {b: f"{v:02d}:" for b, v in _BCD.items() if v < 60}
_SECOND: Final = {b: f"{v:02d}" for b, v in _BCD.items() if v < 60}
#: Context of the generated decoders' numbers: its InvalidOperation trap rejects digit
#: strings with hex letters whatever the thread's current context is, and its precision
#: (more digits than a 255-byte field holds) keeps create_decimal() exact.
_CONTEXT: Final = Context(prec=2 * 255, traps=[InvalidOperation])
#: First digit of a signed number whose sign bit is set (8 -> -0, 9 -> -1).
_NEGATIVE: Final = {"8": "-0", "9": "-1"}
_STAMP_TABLES: Final = {"YY": "_YEAR", "MM": "_BCD", "DD": "_BCD", "hh": "_BCD",
                        "mm": "_BCD", "ss": "_BCD", "WW": "_ZERO"}
_GENERATED_KINDS: Final = frozenset(
    (ValueKind.NUMBER, ValueKind.DATE, ValueKind.DATETIME, ValueKind.TIME)
)
#: Generated decoders kept at most (a bound on memory whatever lengths meters send);
#: layouts beyond it use the reference decoder.
_MAX_GENERATED: Final = 2048
_generated_count = 0


def _stamp_expression(f: FieldSpec, offset: int) -> str:
    """Python expression for a date/time field at ``payload[offset:]``."""
    pattern = f.value_format.pattern
    parts = [pattern[i : i + 2] for i in range(0, len(pattern), 2)]
    # Field i of the pattern (most significant first) is byte offset + (n - 1 - i).
    at = {part: f"payload[{offset + len(parts) - 1 - i}]" for i, part in enumerate(parts)}
    if f.value_format.kind is ValueKind.TIME:
        return f"_HOUR_COLON[{at['hh']}] + _MINUTE_COLON[{at['mm']}] + _SECOND[{at['ss']}]"
    order = [p for p in ("YY", "MM", "DD", "hh", "mm", "ss", "WW") if p in at]
    return "datetime({})".format(", ".join(f"{_STAMP_TABLES[p]}[{at[p]}]" for p in order))


def _generate_source(fields: tuple[FieldSpec, ...], payload_length: int) -> str | None:
    """Write the source of a straight-line decoder for a layout, or ``None``.

    Only layouts of numbers, dates and times are generated (others use the reference
    decoder). The code decodes the plain case and calls ``reference(payload)`` for
    anything else, which the plain path rejects with an exception:

    * a nibble above 9 in a number: ``_decimal(digits + "E-n")`` raises
      InvalidOperation, as hex digits other than ``e`` are no part of a number and an
      ``e`` makes a second exponent (``E0`` is appended when there are no decimals).
      ``_decimal`` is ``create_decimal`` of the private ``_CONTEXT``, so the trap holds
      whatever the caller's context says;
    * a sign digit above 9 (``_NEGATIVE``) or a stamp byte that is not valid BCD (the
      tables hold only valid bytes): KeyError;
    * an impossible or all-zero date: ValueError from ``datetime``.

    The slices are module constants of the generated code, which spares building a
    slice object per value. For ``0203FF00`` (active power total/A/B/C, ``XX.XXXX``,
    signed) it emits (lines cut)::

        _reverse = slice(None, None, -1)
        _s18_24 = slice(18, 24)
        ...
        def decode(payload):
            try:
                t = payload[_reverse].hex()
                return (
                    _new(DataValue, ('total active power',
                        _decimal(s + 'E-4') if (s := t[_s18_24]) < '8'
                        else _decimal(_NEGATIVE[s[0]] + s[1:] + 'E-4'),
                        'kW', '1.7.0')),
                    ...
                )
            except (ArithmeticError, LookupError, ValueError):
                pass
            return reference(payload)

    and for ``04000101`` (date ``YYMMDDWW``) the tuple holds::

        _new(DataValue, ('date', datetime(_YEAR[payload[3]], _BCD[payload[2]],
            _BCD[payload[1]], _ZERO[payload[0]]), None, None)),

    Args:
        fields: the layout.
        payload_length: the payload length it is for (at least the layout's size).

    Returns:
        The source of a function ``decode(payload)``, or ``None``.
    """
    if not fields or any(f.value_format.kind not in _GENERATED_KINDS for f in fields):
        return None
    size = sum(f.length for f in fields)
    width = 2 * size
    constants: list[str] = []  # slices as module constants: t[_s8_12], no BUILD_SLICE
    items: list[str] = []
    offset = 0
    for f in fields:
        if f.value_format.kind is ValueKind.NUMBER:
            start, end = width - 2 * (offset + f.length), width - 2 * offset
            digits = "t"
            if (start, end) != (0, width):
                digits = f"t[_s{start}_{end}]"
                constants.append(f"_s{start}_{end} = slice({start}, {end})")
            suffix = repr(f"E-{f.decimals}" if f.decimals > 0 else "E0")
            if f.signed:
                value = (f"_decimal(s + {suffix}) if (s := {digits}) < '8' "
                         f"else _decimal(_NEGATIVE[s[0]] + s[1:] + {suffix})")
            else:
                value = f"_decimal({digits} + {suffix})"
        else:
            value = _stamp_expression(f, offset)
        items.append(f"_new(DataValue, ({f.name!r}, {value}, {f.unit!r}, {f.channel!r})),")
        offset += f.length
    lines = ["def decode(payload):", "    try:"]
    if any(f.value_format.kind is ValueKind.NUMBER for f in fields):
        first = "None" if size == payload_length else str(size - 1)
        constants.insert(0, f"_reverse = slice({first}, None, -1)")
        lines.append("        t = payload[_reverse].hex()")
    lines.append("        return (")
    lines += [f"            {item}" for item in items]
    lines += [
        "        )",
        "    except (ArithmeticError, LookupError, ValueError):",
        "        pass",
        "    return reference(payload)",
    ]
    return "\n".join(dict.fromkeys(constants)) + "\n" * bool(constants) + "\n".join(lines) + "\n"


def generate_decoder(
    fields: tuple[FieldSpec, ...], payload_length: int, name: str = ""
) -> Decoder | None:
    """Compile the generated decoder of a layout (see `_generate_source`).

    Args:
        fields: the layout, as ``spec.layout(payload_length)`` returns it.
        payload_length: the payload length the decoder is for.
        name: label for tracebacks through the generated code (``"0201FF00/6"``).

    Returns:
        The decoder, or ``None`` for a layout that is not generated.
    """
    source = _generate_source(fields, payload_length)
    if source is None:
        return None
    namespace: dict[str, Any] = {
        "Decimal": Decimal, "datetime": datetime, "DataValue": DataValue, "_new": _new,
        "_BCD": _BCD, "_YEAR": _YEAR, "_ZERO": _ZERO, "_HOUR_COLON": _HOUR_COLON,
        "_MINUTE_COLON": _MINUTE_COLON, "_SECOND": _SECOND, "_NEGATIVE": _NEGATIVE,
        "_decimal": _CONTEXT.create_decimal, "reference": reference_decoder(fields),
    }
    filename = f"<dlt645 decoder {name or payload_length}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    decoder: Decoder = namespace["decode"]
    return decoder


def make_decoder(fields: tuple[FieldSpec, ...], payload_length: int, name: str = "") -> Decoder:
    """Return the decoder `decode_values` keeps: generated when possible, else the reference.

    Args:
        fields: the layout, as ``spec.layout(payload_length)`` returns it.
        payload_length: the payload length the decoder is for.
        name: label for tracebacks through the generated code (``"0201FF00/6"``).

    Returns:
        A function from a payload of ``payload_length`` bytes to its values.
    """
    global _generated_count
    if _generated_count < _MAX_GENERATED:
        decoder = generate_decoder(fields, payload_length, name)
        if decoder is not None:
            _generated_count += 1
            return decoder
    return reference_decoder(fields)


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
    decode: Decoder | None = spec.decoders.get(len(payload))
    if decode is None:
        if spec.category is Category.LOAD_PROFILE:
            return _decode_load_profile(payload, spec)
        length = len(payload)
        fields = spec.layout(length)  # raises on a length that does not fit
        decode = make_decoder(fields, length, f"{spec.di_hex}/{length}")
        spec.decoders[length] = decode  # at most 256 lengths per entry
    return decode(payload)


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
