"""Plain read requests from the client's encoding tables: the codec's bytes, bounded tables."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from amigate.codecs import Dlt645Version, build_read_request, build_read_response, encode_frame
from amigate.drivers import Dlt645Client
from amigate.drivers import dlt645 as driver
from amigate.errors import ConnectionLost, DataError, FrameFormatError
from amigate.transports import MockTransport

METER = "000000000161"
OTHER = "000000000162"
ENERGY = 0x00010000
VOLTAGE = 0x02010100
V97 = Dlt645Version.V1997


def answer(address: str, di: int, version: Dlt645Version = Dlt645Version.V2007) -> bytes:
    """The reply of meter ``address`` to a read of ``di``."""
    values = [Decimal("220.1")] if di == VOLTAGE else [Decimal("1234.56")]
    return encode_frame(build_read_response(address, di, values, version), preamble=0)  # type: ignore[arg-type]


#: (address asked, identifier, meter that answers): wildcards are answered by METER.
ROUND = [
    (METER, ENERGY, METER),
    (OTHER, ENERGY, OTHER),
    (METER, VOLTAGE, METER),
    ("AAAAAAAAAAAA", ENERGY, METER),
    ("AAAAAAAA0161", VOLTAGE, METER),
    (OTHER, VOLTAGE, OTHER),
]


@pytest.mark.parametrize("preamble", [0, 2, 4])
async def test_requests_are_the_bytes_the_codec_encodes(preamble: int) -> None:
    mock = MockTransport([answer(who, di) for _, di, who in ROUND * 3])
    client = Dlt645Client(mock, preamble=preamble, quiet=0.0)
    for address, di, who in ROUND * 3:  # the first round fills the tables, then they serve
        reply = await client.read(address, di)
        assert reply.address == who and reply.di == di
    expected = [encode_frame(build_read_request(a, di), preamble=preamble) for a, di, _ in ROUND]
    assert mock.writes == expected * 3
    assert client.cached_encodings == (2, 4)  # two identifiers, four addresses: not pairs


async def test_1997_requests_are_the_codec_bytes_too() -> None:
    pairs = [(METER, 0x9010), (OTHER, 0x9010), (METER, 0x9020)]
    mock = MockTransport([answer(a, di, V97) for a, di in pairs * 2])
    client = Dlt645Client(mock, version=V97, quiet=0.0)
    for address, di in pairs * 2:
        await client.read(address, di)
    expected = [encode_frame(build_read_request(a, di, V97)) for a, di in pairs]
    assert mock.writes == expected * 2


async def test_the_tables_stay_within_their_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "_ADDRESS_CACHE", 3)
    monkeypatch.setattr(driver, "_TEMPLATE_CACHE", 2)
    meters = [f"{n:012d}" for n in range(1, 9)]
    dis = [ENERGY, VOLTAGE, 0x00020000]
    pairs = [(a, di) for a in meters for di in dis] * 2
    mock = MockTransport([answer(a, di) for a, di in pairs])
    client = Dlt645Client(mock, quiet=0.0)
    for address, di in pairs:
        await client.read(address, di)
        templates, addresses = client.cached_encodings
        assert templates <= 2 and addresses <= 3
    assert client.cached_encodings == (2, 3)
    assert mock.writes == [encode_frame(build_read_request(a, di)) for a, di in pairs]


async def test_bad_addresses_and_identifiers_are_refused_and_not_kept() -> None:
    client = Dlt645Client(MockTransport(), quiet=0.0)
    with pytest.raises(FrameFormatError):
        await client.read("12345", ENERGY)
    with pytest.raises(DataError):
        await Dlt645Client(MockTransport(), version=V97, quiet=0.0).read(METER, ENERGY)
    assert client.cached_encodings == (1, 0)  # the identifier is fine; the address is not kept


async def test_transport_errors_are_translated_and_foreign_ones_pass_unchanged() -> None:
    lost = Dlt645Client(MockTransport(error=ConnectionResetError("reset by peer")), quiet=0.0)
    with pytest.raises(ConnectionLost, match="write mock://: reset by peer"):
        await lost.read(METER, ENERGY)
    bug = RuntimeError("not a transport error")
    with pytest.raises(RuntimeError) as raised:
        await Dlt645Client(MockTransport(error=bug), quiet=0.0).read(METER, ENERGY)
    assert raised.value is bug and raised.value.__cause__ is None


async def test_frames_are_logged_in_hex_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    mock = MockTransport([answer(METER, ENERGY), answer(METER, ENERGY)])
    client = Dlt645Client(mock, quiet=0.0)
    with caplog.at_level(logging.INFO, logger=driver.__name__):
        await client.read(METER, ENERGY)
    assert not [r for r in caplog.records if r.name == driver.__name__]
    with caplog.at_level(logging.DEBUG, logger=driver.__name__):
        await client.read(METER, ENERGY)
    lines = [r.getMessage() for r in caplog.records if r.name == driver.__name__]
    assert lines == [f"tx {mock.writes[1].hex(' ')}", "rx 000000000161 91 00 00 01 00 56 34 12 00"]
