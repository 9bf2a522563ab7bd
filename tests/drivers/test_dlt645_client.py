"""The DL/T 645 master over the scripted in-memory transport."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

import pytest

from amigate.codecs import (
    Dlt645Version,
    Frame,
    build_abnormal_response,
    build_address_response,
    build_read_request,
    build_read_response,
    decode_frame,
    encode_frame,
    encode_load_record,
)
from amigate.drivers import Dlt645Client, address_matches
from amigate.errors import (
    ChecksumError,
    DeviceRejected,
    ReadTimeout,
    TransportError,
    UnexpectedReply,
)
from amigate.transports import Late, MockTransport

METER = "000000000161"
OTHER = "000000000162"
ENERGY = 0x00010000
VOLTAGE = 0x02010100


def reply(address: str, di: int, values: list[object], **kw: object) -> bytes:
    return encode_frame(build_read_response(address, di, values, **kw), preamble=0)  # type: ignore[arg-type]


def energy_reply(address: str = METER, kwh: str = "1234.56") -> bytes:
    return reply(address, ENERGY, [Decimal(kwh)])


def corrupt(raw: bytes) -> bytes:
    """Flip one bit of the last data byte: the checksum no longer matches."""
    data = bytearray(raw)
    data[-3] ^= 0x01
    return bytes(data)


def client(mock: MockTransport, **kw: object) -> Dlt645Client:
    kw.setdefault("quiet", 0.0)
    return Dlt645Client(mock, **kw)  # type: ignore[arg-type]


async def test_read_sends_a_standard_request_and_decodes_the_value() -> None:
    mock = MockTransport([energy_reply()])
    response = await client(mock).read(METER, ENERGY)
    assert mock.writes == [bytes.fromhex("FEFEFEFE 68 610100000000 68 11 04 33333433 14 16")]
    assert response.address == METER
    assert response.di == ENERGY
    assert [(v.value, v.unit, v.channel) for v in response.values] == [
        (Decimal("1234.56"), "kWh", "1.8.0")
    ]


async def test_replies_from_other_meters_and_echoes_are_skipped() -> None:
    request_echo = encode_frame(build_read_request(METER, ENERGY), preamble=4)
    stray = energy_reply(OTHER, "9.99")
    mock = MockTransport([request_echo + stray + b"\xfe\xfe" + energy_reply()])
    c = client(mock)
    response = await c.read(METER, ENERGY)
    assert response.values[0].value == Decimal("1234.56")
    assert c.stats.stray_frames == 1
    assert c.stats.retries == 0


async def test_a_reply_split_into_small_chunks_is_reassembled() -> None:
    raw = b"\xfe\xfe" + energy_reply()
    mock = MockTransport([raw[i : i + 2] for i in range(0, len(raw), 2)], need_write=False)
    response = await client(mock).read(METER, ENERGY)
    assert response.values[0].value == Decimal("1234.56")


async def test_no_reply_raises_read_timeout_after_the_retry() -> None:
    mock = MockTransport([None, None])
    c = client(mock, retries=1)
    with pytest.raises(ReadTimeout) as info:
        await c.read(METER, ENERGY)
    assert len(mock.writes) == 2
    message = str(info.value)
    assert "meter 000000000161" in message and "DI 00010000" in message
    assert "2 attempt(s)" in message and "mock://" in message
    assert c.stats.timeouts == 2 and c.stats.retries == 1


async def test_a_garbled_reply_is_retried() -> None:
    mock = MockTransport([corrupt(energy_reply()), energy_reply()])
    c = client(mock)
    response = await c.read(METER, ENERGY)
    assert response.values[0].value == Decimal("1234.56")
    assert len(mock.writes) == 2
    assert c.stats.frame_errors == 1 and c.stats.retries == 1


async def test_garbled_every_time_raises_checksum_error() -> None:
    mock = MockTransport([corrupt(energy_reply()), corrupt(energy_reply())])
    with pytest.raises(ChecksumError, match=r"meter 000000000161, DI 00010000.*checksum"):
        await client(mock).read(METER, ENERGY)


async def test_an_abnormal_reply_raises_device_rejected_without_retry() -> None:
    abnormal = encode_frame(build_abnormal_response(METER, 0x02), preamble=0)
    mock = MockTransport([abnormal, energy_reply()])
    with pytest.raises(DeviceRejected, match="no requested data") as info:
        await client(mock).read(METER, ENERGY)
    assert info.value.code == 0x02
    assert info.value.reasons == ("no requested data",)
    assert len(mock.writes) == 1


async def test_a_reply_for_another_di_is_unexpected() -> None:
    wrong = reply(METER, VOLTAGE, [Decimal("220.1")])
    mock = MockTransport([wrong, wrong])
    with pytest.raises(UnexpectedReply, match="answered DI 02010100 to a request for 00010000"):
        await client(mock).read(METER, ENERGY)
    assert len(mock.writes) == 2


async def test_a_late_reply_is_drained_and_never_taken_for_the_next_answer() -> None:
    late_energy = Late(energy_reply(kwh="1.00"))
    mock = MockTransport([late_energy, energy_reply(kwh="2.00")])
    c = client(mock, retries=0)
    with pytest.raises(ReadTimeout):
        await c.read(METER, ENERGY)
    response = await c.read(METER, ENERGY)
    assert response.values[0].value == Decimal("2.00")
    assert c.stats.late_bytes == len(late_energy)


async def test_follow_up_frames_are_requested_and_joined() -> None:
    di = 0x06000001
    since = datetime(2026, 11, 20, 0, 0)
    records = [
        encode_load_record(datetime(2026, 11, 20, 0, 15 * i), {4: [Decimal(f"10.0{i}"), 0, 0, 0]})
        for i in range(3)
    ]
    first = encode_frame(build_read_response(METER, di, records[0], follow_up=True), preamble=0)
    second = encode_frame(
        build_read_response(METER, di, records[1], follow_up=True, seq=1), preamble=0
    )
    third = encode_frame(build_read_response(METER, di, records[2], seq=2), preamble=0)
    mock = MockTransport([first, second, third])
    c = client(mock)
    response = await c.read(METER, di, blocks=3, since=since)
    followups = [decode_frame(w) for w in mock.writes[1:]]
    assert [(f.control, f.data[-1]) for f in followups] == [(0x12, 1), (0x12, 2)]
    energies = [v.value for v in response.values if v.channel == "1.8.0"]
    assert energies == [Decimal("10.00"), Decimal("10.01"), Decimal("10.02")]
    stamps = [v.value for v in response.values if v.name == "load record time"]
    assert stamps == [datetime(2026, 11, 20, 0, 0), datetime(2026, 11, 20, 0, 15),
                      datetime(2026, 11, 20, 0, 30)]  # fmt: skip
    assert not response.follow_up
    assert c.stats.followups == 2


async def test_read_address_uses_13h_at_the_wildcard() -> None:
    mock = MockTransport([encode_frame(build_address_response(METER), preamble=0)])
    assert await client(mock).read_address() == METER
    sent = decode_frame(mock.writes[0])
    assert (sent.address, sent.control, sent.data) == ("AAAAAAAAAAAA", 0x13, b"")


async def test_wildcard_reads_accept_the_real_address() -> None:
    mock = MockTransport([energy_reply()])
    response = await client(mock).read("AAAAAAAAAAAA", ENERGY)
    assert response.address == METER


async def test_time_sync_is_a_broadcast_without_reply() -> None:
    mock = MockTransport([])
    await client(mock, baud=19200).time_sync(datetime(2026, 11, 22, 12, 30, 45))
    frame = decode_frame(mock.writes[0])
    assert frame.address == "999999999999" and frame.control == 0x08
    assert frame.data == bytes.fromhex("453012221126")


async def test_1997_reads_use_function_01_and_two_byte_identifiers() -> None:
    raw = encode_frame(
        build_read_response(METER, 0x9010, [Decimal("55.5")], Dlt645Version.V1997), preamble=0
    )
    mock = MockTransport([raw])
    response = await client(mock, version=Dlt645Version.V1997).read(METER, 0x9010)
    sent = decode_frame(mock.writes[0])
    assert (sent.control, sent.data) == (0x01, b"\x10\x90")
    assert response.values[0].value == Decimal("55.50")


async def test_an_oserror_from_the_transport_becomes_transport_error() -> None:
    mock = MockTransport([energy_reply()], error=OSError(5, "Input/output error"))
    with pytest.raises(TransportError, match=r"write mock://.*Input/output error"):
        await client(mock).read(METER, ENERGY)


async def test_one_request_in_flight_per_bus() -> None:
    class Tracking(MockTransport):
        in_flight = 0
        most = 0

        async def write(self, data: bytes) -> None:
            frame = decode_frame(data)
            if frame.control == 0x11:
                Tracking.in_flight += 1
                Tracking.most = max(Tracking.most, Tracking.in_flight)
            await super().write(data)

        async def read(self, max_bytes: int, timeout: float) -> bytes:  # noqa: ASYNC109
            await asyncio.sleep(0.001)
            data = await super().read(max_bytes, timeout)
            Tracking.in_flight -= 1
            return data

    mock = Tracking([energy_reply(kwh=f"{i}.00") for i in range(5)])
    c = client(mock)
    results = await asyncio.gather(*(c.read(METER, ENERGY) for _ in range(5)))
    assert sorted(r.values[0].value for r in results) == [Decimal(f"{i}.00") for i in range(5)]
    assert Tracking.most == 1


def test_response_timeout_follows_line_speed_and_slack() -> None:
    mock = MockTransport([])
    c = Dlt645Client(mock, baud=2400, slack=0.25)
    request = build_read_request(METER, ENERGY)
    # 20 bytes out + 24 bytes back at 11 bits/byte, 2400 bit/s; + Td 0.5 s + slack.
    assert c.read_timeout(request, ENERGY) == pytest.approx(44 * 11 / 2400 + 0.5 + 0.25)
    slow = Dlt645Client(mock, baud=1200, slack=0.25)
    assert slow.read_timeout(request, ENERGY) == pytest.approx(44 * 11 / 1200 + 0.75)


@pytest.mark.parametrize(
    ("requested", "replied", "ok"),
    [
        (METER, METER, True),
        (METER, OTHER, False),
        ("AAAAAAAAAAAA", OTHER, True),
        ("AAAAAAAA0161", METER, True),
        ("AAAAAAAA0161", OTHER, False),
    ],
)
def test_address_matches(requested: str, replied: str, ok: bool) -> None:
    assert address_matches(requested, replied) is ok


def test_frame_helpers_are_consistent() -> None:
    assert isinstance(decode_frame(energy_reply()), Frame)
