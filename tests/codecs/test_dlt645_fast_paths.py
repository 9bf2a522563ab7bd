"""The decoder's fast paths give the same objects and values as the checked, general paths."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from decimal import Decimal, localcontext

import pytest

from amigate.codecs import (
    Dlt645Buffer,
    Dlt645Version,
    FieldSpec,
    Frame,
    build_read_response,
    decode_read_response,
    decode_values,
    encode_frame,
    lookup_di,
)
from amigate.codecs.dlt645_frame import unchecked_frame
from amigate.codecs.dlt645_payload import generate_decoder, reference_decoder
from amigate.errors import FrameFormatError, FrameTooLong

V07 = Dlt645Version.V2007


def _through_buffer(frame: Frame, *, preamble: int = 4) -> Frame:
    buffer = Dlt645Buffer(max_data_length=255)
    buffer.feed(encode_frame(frame, preamble=preamble))
    out = buffer.next_frame()
    assert out is not None and len(buffer) == 0
    return out


@pytest.mark.parametrize("preamble", [0, 4])
@pytest.mark.parametrize("address", ["000000000161", "AAAAAAAAAAAA", "0000000000AB"])
def test_buffer_frames_are_plain_frozen_frames(address: str, preamble: int) -> None:
    built = Frame(address, 0x91, b"\x00\x00\x01\x00\x26\x00\x00\x00")
    frame = _through_buffer(built, preamble=preamble)
    assert type(frame) is Frame
    assert frame == built and hash(frame) == hash(built)
    assert frame.address == address  # hex letters upper-case, as Frame requires
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.address = "000000000001"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(frame)) == built
    assert copy.copy(frame) == built
    assert dataclasses.replace(frame, control=0x11).control == 0x11
    with pytest.raises(FrameFormatError):
        dataclasses.replace(frame, address="bad")  # replace() still runs the checks


def test_unchecked_frame_equals_a_checked_one() -> None:
    frame = unchecked_frame("000000000161", 0x91, b"\x01")
    assert type(frame) is Frame and frame == Frame("000000000161", 0x91, b"\x01")
    assert repr(frame) == "Frame(address='000000000161', control=145, data=b'\\x01')"


def test_max_data_length_set_after_creation_holds_on_every_path() -> None:
    short = encode_frame(Frame("000000000161", 0x91, bytes(20)))
    long = encode_frame(Frame("000000000161", 0x91, bytes(250)))
    buffer = Dlt645Buffer()
    buffer.feed(long)
    with pytest.raises(FrameTooLong, match="L=250 exceeds the cap of 200"):
        buffer.next_frame()
    buffer.clear()
    buffer.max_data_length = 255
    assert buffer.max_data_length == 255
    buffer.feed(long)
    frame = buffer.next_frame()
    assert frame is not None and len(frame.data) == 250
    buffer.max_data_length = 10  # lowered: the fast path must refuse the 20-byte frame
    buffer.feed(short)
    with pytest.raises(FrameTooLong, match="L=20 exceeds the cap of 10"):
        buffer.next_frame()
    with pytest.raises(ValueError, match=r"within 0\.\.255"):
        buffer.max_data_length = 256
    assert buffer.max_data_length == 10


def test_numbers_stay_exact_whatever_the_callers_precision() -> None:
    reply = build_read_response(
        "000000000161",
        0x0001FF00,
        [Decimal("112280.26"), Decimal("999999.99"), Decimal("0.01"), Decimal("0"), Decimal("1")],
    )
    with localcontext() as ctx:
        ctx.prec = 3
        values = decode_read_response(reply, version=V07).values
        again = decode_values(lookup_di(0x0001FF00), reply.data[4:])
    expected = ["112280.26", "999999.99", "0.01", "0.00", "1.00"]
    assert [str(v.value) for v in values] == expected
    assert [str(v.value) for v in again] == expected


def test_generated_decoder_is_exact_beyond_the_default_precision() -> None:
    """A 40-digit number: more than the 28 digits of Python's default context."""
    field = FieldSpec(name="long", format="X" * 36 + ".XXXX", unit="kWh")
    payload = bytes.fromhex("1234567890" * 4)[::-1]
    generated = generate_decoder((field,), len(payload))
    assert generated is not None
    value = generated(payload)[0].value
    assert str(value) == "123456789012345678901234567890123456.7890"
    assert generated(payload) == reference_decoder((field,))(payload)
