"""Generated reply decoders: the same values and errors as the field-by-field reference."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amigate.codecs import (
    CATALOGUE,
    Category,
    DataValue,
    DiSpec,
    Dlt645Version,
    ValueKind,
    build_read_response,
    decode_read_response,
    decode_values,
    lookup_di,
)
from amigate.codecs.dlt645_payload import (
    _generate_source,
    generate_decoder,
    reference_decoder,
)
from amigate.errors import DataError, UnexpectedReply

_GENERATED_KINDS = {ValueKind.NUMBER, ValueKind.DATE, ValueKind.DATETIME, ValueKind.TIME}


def _generated(spec: DiSpec) -> bool:
    fields = spec.fields + spec.tariff_fields
    return spec.category is not Category.LOAD_PROFILE and bool(fields) and all(
        f.value_format.kind in _GENERATED_KINDS for f in fields
    )


_SPECS = sorted((s for s in CATALOGUE.values() if _generated(s)),
                key=lambda s: (s.version.value, s.di))
#: Bytes that hit the edges: BCD limits, sign bits, fillers, zero, hex letters.
_EDGES = (0x00, 0x01, 0x09, 0x0A, 0x12, 0x23, 0x24, 0x31, 0x59, 0x60, 0x79, 0x80, 0x89,
          0x99, 0x9A, 0xA0, 0xAA, 0xE0, 0xEE, 0xF9, 0xFF)

_BCD_BYTE = st.builds(lambda hi, lo: hi << 4 | lo, st.integers(0, 9), st.integers(0, 9))


def _outcome(decode: object, payload: bytes) -> tuple[str, object]:
    """Values with their exact text, or the DataError message."""
    assert callable(decode)
    try:
        values: tuple[DataValue, ...] = decode(payload)
    except DataError as exc:
        return "error", str(exc)
    assert all(type(v) is DataValue for v in values)
    return "values", [(v.name, type(v.value), str(v.value), v.value, v.unit, v.channel)
                      for v in values]


@st.composite
def layouts_and_payloads(draw: st.DrawFn) -> tuple[DiSpec, int, bytes]:
    spec = draw(st.sampled_from(_SPECS))
    length = spec.length
    if spec.tariff_fields:
        group = sum(f.length for f in spec.tariff_fields)
        length = spec.fixed_length + group * draw(st.integers(0, 6))
    elif spec.trailing:
        length += draw(st.integers(0, 5))
    byte = st.one_of(st.sampled_from(_EDGES), st.integers(0, 255), _BCD_BYTE)
    payload = bytes(draw(st.lists(byte, min_size=length, max_size=length)))
    return spec, length, payload


@given(layouts_and_payloads())
def test_generated_decoder_equals_reference(case: tuple[DiSpec, int, bytes]) -> None:
    spec, length, payload = case
    fields = spec.layout(length)
    generated = generate_decoder(fields, length)
    assert generated is not None
    assert _outcome(generated, payload) == _outcome(reference_decoder(fields), payload)


@given(st.sampled_from([s for s in _SPECS if not s.tariff_fields and not s.trailing]),
       st.data())
def test_generated_decoder_equals_reference_on_valid_bcd(
    spec: DiSpec, data: st.DataObject
) -> None:
    """Only valid BCD bytes, so the generated plain path itself is what gets compared."""
    payload = bytes(data.draw(st.lists(_BCD_BYTE, min_size=spec.length, max_size=spec.length)))
    fields = spec.layout(spec.length)
    generated = generate_decoder(fields, spec.length)
    assert _outcome(generated, payload) == _outcome(reference_decoder(fields), payload)


def test_every_catalogued_layout_compiles() -> None:
    for spec in CATALOGUE.values():
        if spec.category is Category.LOAD_PROFILE:
            continue
        fields = spec.layout(spec.length)
        decoder = generate_decoder(fields, spec.length, spec.di_hex)
        assert (decoder is not None) == _generated(spec), spec.di_hex


def test_generated_source_reads_like_its_docstring() -> None:
    spec = lookup_di(0x0201FF00)
    source = _generate_source(spec.layout(6), 6)
    assert source is not None
    assert source.splitlines() == [
        "_reverse = slice(None, None, -1)",
        "_s8_12 = slice(8, 12)",
        "_s4_8 = slice(4, 8)",
        "_s0_4 = slice(0, 4)",
        "def decode(payload):",
        "    try:",
        "        t = payload[_reverse].hex()",
        "        return (",
        "            _new(DataValue, ('A phase voltage', _decimal(t[_s8_12] + 'E-1'),"
        " 'V', '32.7.0')),",
        "            _new(DataValue, ('B phase voltage', _decimal(t[_s4_8] + 'E-1'),"
        " 'V', '52.7.0')),",
        "            _new(DataValue, ('C phase voltage', _decimal(t[_s0_4] + 'E-1'),"
        " 'V', '72.7.0')),",
        "        )",
        "    except (ArithmeticError, LookupError, ValueError):",
        "        pass",
        "    return reference(payload)",
    ]
    date = _generate_source(lookup_di(0x04000101).fields, 4)
    assert date is not None and "t = " not in date
    assert ("datetime(_YEAR[payload[3]], _BCD[payload[2]], _BCD[payload[1]], "
            "_ZERO[payload[0]])") in date


def test_trailing_bytes_are_ignored_like_the_reference() -> None:
    spec = next(s for s in _SPECS if s.trailing)
    payload = bytes(range(0x10, 0x10 + spec.fixed_length)) + b"\xab\xcd"
    fields = spec.layout(len(payload))
    generated = generate_decoder(fields, len(payload))
    assert _outcome(generated, payload) == _outcome(reference_decoder(fields), payload)


@pytest.mark.parametrize("traps", [True, False])
def test_invalid_bcd_raises_whatever_the_decimal_context(traps: bool) -> None:
    spec = lookup_di(0x0001FF00)
    with localcontext() as ctx:
        ctx.traps[InvalidOperation] = traps
        for bad in (b"\x00\x00\x0a\x00", b"\x00\x00\xe0\x00", b"\x00\xe5\x00\x00"):
            payload = b"\x00\x00\x00\x00" + bad + b"\x00" * 12
            with pytest.raises(DataError, match="invalid BCD"):
                decode_values(spec, payload)
        assert decode_values(spec, b"\x00" * 20)[0].value == Decimal("0.00")


def test_signed_values_and_fillers() -> None:
    spec = lookup_di(0x0203FF00)
    # Least significant byte first: total 79.9999, A -0.0315 (sign bit on 00 -> 80),
    # B -11.0000 (bytes 00 00 91: digits 910000, sign bit off 9 leaves 1), C filler.
    payload = bytes.fromhex("999979" "150380" "000091" "ffffff")
    values = [v.value for v in decode_values(spec, payload)]
    assert [str(v) for v in values] == ["79.9999", "-0.0315", "-11.0000", "None"]
    # A sign digit above 9 (A0 -> -2) goes through the reference: same as decode_value.
    payload = bytes.fromhex("000000" "0000a0" "000000" "000000")
    assert str(decode_values(spec, payload)[1].value) == "-20.0000"


def test_stamps_that_are_not_plain_take_the_reference() -> None:
    date = lookup_di(0x04000101)
    assert decode_values(date, b"\x00\x00\x00\x00")[0].value is None  # never happened
    assert decode_values(date, b"\xff\xff\xff\xff")[0].value is None  # filler
    with pytest.raises(DataError):
        decode_values(date, b"\x03\x31\x02\x24")  # 2024-02-31
    with pytest.raises(DataError):
        decode_values(date, b"\x0a\x11\x01\x16")  # WW nibble above 9
    time = lookup_di(0x04000102)
    assert decode_values(time, b"\x00\x00\x00")[0].value == "00:00:00"
    assert decode_values(time, b"\x59\x59\x23")[0].value == "23:59:59"
    with pytest.raises(DataError):
        decode_values(time, b"\x00\x00\x24")


def test_fast_reply_path_keeps_the_di_check() -> None:
    frame = build_read_response("000000000161", 0x0201FF00, [Decimal("230.1")] * 3)
    version = Dlt645Version.V2007
    first = decode_read_response(frame, version=version)  # builds the decoder
    again = decode_read_response(frame, version=version, expected_di=0x0201FF00)
    assert again == first and again.values[0].value == Decimal("230.1")
    with pytest.raises(UnexpectedReply):
        decode_read_response(frame, version=version, expected_di=0x0202FF00)
