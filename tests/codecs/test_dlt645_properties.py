"""Property tests: frame and value round trips, and the buffer's closed set of outcomes."""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amigate.codecs import (
    Dlt645Buffer,
    Dlt645Version,
    Frame,
    build_read_response,
    decode_bcd_number,
    decode_frame,
    decode_read_response,
    decode_value,
    decode_values,
    encode_bcd_number,
    encode_frame,
    encode_value,
    lookup_di,
    value_format,
)
from amigate.errors import ChecksumError, DataError, FrameError

addresses = st.text(alphabet="0123456789ABCDEF", min_size=12, max_size=12)
frames = st.builds(
    Frame,
    address=addresses,
    control=st.integers(0, 255),
    data=st.binary(max_size=255),
)


@given(frames, st.integers(0, 8))
def test_frame_round_trip(frame: Frame, preamble: int) -> None:
    raw = encode_frame(frame, preamble=preamble)
    assert decode_frame(raw) == frame
    buffer = Dlt645Buffer(max_data_length=255)
    buffer.feed(raw)
    assert buffer.next_frame() == frame
    assert buffer.next_frame() is None


@given(st.lists(frames.filter(lambda f: len(f.data) <= 200), max_size=5), st.integers(1, 7))
def test_stream_of_frames_any_chunking(batch: list[Frame], chunk: int) -> None:
    stream = b"".join(encode_frame(f) for f in batch)
    buffer = Dlt645Buffer()
    out = []
    for i in range(0, len(stream), chunk):
        buffer.feed(stream[i : i + chunk])
        while (frame := buffer.next_frame()) is not None:
            out.append(frame)
    assert out == batch


@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_give_frames_none_or_frame_errors(data: bytes, chunk: int) -> None:
    buffer = Dlt645Buffer(max_garbage=256)
    for i in range(0, len(data), chunk):
        buffer.feed(data[i : i + chunk])
        for _ in range(len(data) + 1):  # every call makes progress; bound the loop anyway
            try:
                result = buffer.next_frame()
            except FrameError:
                continue
            assert result is None or isinstance(result, Frame)
            if result is None:
                break


@given(st.binary(max_size=300))
def test_decode_frame_raises_only_frame_errors(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data)


@st.composite
def bcd_numbers(draw: st.DrawFn) -> tuple[Decimal, int, int, bool]:
    length = draw(st.integers(1, 6))
    decimals = draw(st.integers(0, 2 * length - 1))
    signed = draw(st.booleans())
    digits = 2 * length - (1 if signed else 0)
    magnitude = draw(st.integers(0, 10**digits - 1))
    if signed and magnitude >= 8 * 10 ** (digits - 1):
        magnitude //= 10
    negative = signed and magnitude and draw(st.booleans())
    value = Decimal(-magnitude if negative else magnitude).scaleb(-decimals)
    return value, length, decimals, signed


@given(bcd_numbers())
def test_bcd_number_round_trip(case: tuple[Decimal, int, int, bool]) -> None:
    value, length, decimals, signed = case
    raw = encode_bcd_number(value, length, decimals, signed=signed)
    assert len(raw) == length
    decoded = decode_bcd_number(raw, decimals, signed=signed)
    assert decoded == value
    assert decoded is not None and decoded.as_tuple().exponent == -decimals


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)))
def test_datetime_round_trip(when: datetime) -> None:
    when = when.replace(microsecond=0)
    full = value_format("YYMMDDhhmmss")
    assert decode_value(encode_value(when, full), full) == when
    short = value_format("YYMMDDhhmm")
    assert decode_value(encode_value(when, short), short) == when.replace(second=0)


energy = st.decimals(min_value=0, max_value=Decimal("999999.99"), places=2)
voltage = st.decimals(min_value=0, max_value=Decimal("999.9"), places=1)


@given(st.lists(energy, min_size=1, max_size=9))
def test_tariff_block_reply_round_trip(values: list[Decimal]) -> None:
    frame = build_read_response("000000000161", 0x0001FF00, values)
    response = decode_read_response(decode_frame(encode_frame(frame)),
                                    version=Dlt645Version.V2007, expected_di=0x0001FF00)
    assert [v.value for v in response.values] == values
    assert response.values[-1].channel == f"1.8.{len(values) - 1}"


@given(st.lists(st.one_of(st.none(), voltage), min_size=3, max_size=3))
def test_voltage_block_reply_round_trip(values: list[Decimal | None]) -> None:
    frame = build_read_response("000000000161", 0x0201FF00, values)
    response = decode_read_response(frame, version=Dlt645Version.V2007)
    assert [v.value for v in response.values] == values
    assert lookup_di(0x0201FF00).length == 6


_DECODED_DIS = (0x00010000, 0x0001FF00, 0x0201FF00, 0x0202FF00, 0x0203FF00, 0x0206FF00,
                0x04000101, 0x04000102, 0x0400010C, 0x04000402, 0x01010000)


@given(st.sampled_from(_DECODED_DIS), st.data())
def test_compiled_decoder_matches_field_by_field_decoding(di: int, data: st.DataObject) -> None:
    """The reply decoder's fast paths give exactly what decode_value gives per field."""
    spec = lookup_di(di)
    fields = spec.layout(spec.length)
    byte = st.one_of(st.sampled_from([0x00, 0x09, 0x12, 0x59, 0x80, 0x99, 0xEE, 0xFF]),
                     st.integers(0, 255))
    payload = bytes(data.draw(st.lists(byte, min_size=spec.length, max_size=spec.length)))
    expected: list[object] = []
    offset = 0
    try:
        for f in fields:
            raw = payload[offset : offset + f.length]
            expected.append(decode_value(raw, f.value_format, signed=f.signed))
            offset += f.length
    except DataError:
        with pytest.raises(DataError):
            decode_values(spec, payload)
        return
    got = decode_values(spec, payload)
    assert [v.value for v in got] == expected
    assert [str(v.value) for v in got] == [str(v) for v in expected]  # same exponent
    assert [(v.name, v.unit, v.channel) for v in got] == [(f.name, f.unit, f.channel)
                                                          for f in fields]


@pytest.mark.parametrize("length", [200, 246, 247, 255])
@pytest.mark.parametrize("fill", [0x00, 0xCC, 0xFF])
def test_buffer_checksum_on_long_frames(length: int, fill: int) -> None:
    """Long frames, where a byte sum can pass 65521, are checked exactly too."""
    frame = Frame("999999999999", 0x91, bytes([fill]) * length)
    raw = encode_frame(frame)
    buf = Dlt645Buffer(max_data_length=255)
    buf.feed(raw)
    assert buf.next_frame() == frame
    bad = bytearray(raw)
    bad[-2] ^= 0x01
    buf.feed(bytes(bad))
    with pytest.raises(ChecksumError):
        buf.next_frame()


def test_buffer_accepts_bytearray_and_memoryview() -> None:
    raw = encode_frame(Frame("000000000161", 0x91, b"\x00\x00\x01\x00\x26\x00\x00\x00"))
    buf = Dlt645Buffer()
    buf.feed(bytearray(raw[:5]))
    buf.feed(memoryview(raw)[5:])
    frame = buf.next_frame()
    assert frame is not None and frame.data == b"\x00\x00\x01\x00\x26\x00\x00\x00"
    assert type(frame.data) is bytes and len(buf) == 0
