"""Catalogue, values and messages: blocks, sign bit, fillers, 1997 resolutions, descriptions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from amigate.codecs import (
    ADDRESS_BROADCAST,
    ADDRESS_WILDCARD,
    CATALOGUE,
    Confidence,
    DataValue,
    Dlt645Version,
    Frame,
    build_abnormal_response,
    build_address_response,
    build_read_address,
    build_read_followup,
    build_read_request,
    build_read_response,
    build_time_sync,
    decode_address_response,
    decode_bcd_number,
    decode_frame,
    decode_read_request,
    decode_read_response,
    decode_time_sync,
    decode_value,
    describe_frame,
    encode_bcd_number,
    encode_frame,
    encode_load_record,
    expected_response_length,
    lookup_di,
    value_format,
)
from amigate.errors import DataError, DeviceRejected, UnexpectedReply, UnknownDataIdentifier

V07 = Dlt645Version.V2007
V97 = Dlt645Version.V1997
D = Decimal
ADDR = "000000000161"


def _round(frame: Frame) -> Frame:
    return decode_frame(encode_frame(frame))


def test_catalogue_entries_are_consistent() -> None:
    for (version, di), spec in CATALOGUE.items():
        assert spec.version is version and spec.di == di
        assert spec.length >= 0
        assert len(spec.di_hex) == (8 if version is V07 else 4)


def test_lookup_single_items() -> None:
    spec = lookup_di(0x00010000)
    assert (spec.format, spec.length, spec.unit, spec.signed, spec.channel) == (
        "XXXXXX.XX", 4, "kWh", False, "1.8.0")
    assert spec.scale == D("0.01")
    current = lookup_di(0x02020100)
    assert (current.format, current.length, current.unit, current.signed) == (
        "XXX.XXX", 3, "A", True)
    assert lookup_di(0x02800002).channel == "14.7.0"
    assert lookup_di(0x02030000).channel == "1.7.0"
    assert lookup_di(0x02060000).channel == "13.7.0"
    assert [lookup_di(0x00010000 | t << 8).channel for t in range(5)] == [
        "1.8.0", "1.8.1", "1.8.2", "1.8.3", "1.8.4"]
    assert lookup_di(0x00020300).channel == "2.8.3"
    assert lookup_di(0x00010001).channel == "1.8.0*01"
    assert lookup_di(0x01010000).channel == "1.6.0"
    with pytest.raises(UnknownDataIdentifier, match="DI 12345678 is not catalogued"):
        lookup_di(0x12345678)
    with pytest.raises(UnknownDataIdentifier):
        lookup_di(0x00010000, V97)


def test_unconfirmed_entries_are_marked() -> None:
    assert lookup_di(0x02050000).confidence is Confidence.UNCONFIRMED
    assert lookup_di(0x1D000001).confidence is Confidence.UNCONFIRMED
    assert lookup_di(0x01010000).confidence is Confidence.SINGLE
    assert lookup_di(0x00010000).confidence is Confidence.CONFIRMED


def test_1997_resolutions_differ_from_2007() -> None:
    assert lookup_di(0xB611, V97).format == "XXX"
    assert lookup_di(0x02010100).format == "XXX.X"
    assert lookup_di(0xB621, V97).format == "XX.XX"
    assert lookup_di(0x02020100).format == "XXX.XXX"
    assert lookup_di(0xB640, V97).format == "XX.XX"
    assert lookup_di(0x02040000).format == "XX.XXXX"
    # S-heyuan: B611 reply 00 01 means 100 V in 1997, 10.0 V would be the 2007 reading.
    reply = build_read_response(ADDR, 0xB611, bytes.fromhex("0001"), V97)
    assert decode_read_response(reply, version=V97).values[0].value == D("100")
    current = build_read_response(ADDR, 0xB621, [D("12.34")], V97)
    assert current.data == bytes.fromhex("21B63412")
    assert lookup_di(0x9010, V97).channel == "1.8.0"
    assert lookup_di(0x9410, V97).channel == "1.8.0*01"
    assert lookup_di(0xB010, V97).format == "MMDDhhmm"


def test_block_reads_decode_to_several_values() -> None:
    power = build_read_response(ADDR, 0x0203FF00,
                                [D("1.5"), D("-0.25"), D("0.75"), D("1.0")])
    values = decode_read_response(_round(power), version=V07).values
    assert [(v.name, v.value, v.channel) for v in values] == [
        ("total active power", D("1.5000"), "1.7.0"),
        ("A phase active power", D("-0.2500"), "21.7.0"),
        ("B phase active power", D("0.7500"), "41.7.0"),
        ("C phase active power", D("1.0000"), "61.7.0"),
    ]
    demand = build_read_response(ADDR, 0x01010000, [D("3.2"), datetime(2024, 5, 6, 7, 15)])
    assert demand.data[4:].hex() == "0020031507060524"
    dv = decode_read_response(demand, version=V07).values
    assert dv[0] == DataValue("forward active max demand total", D("3.2000"), "kW", "1.6.0")
    assert dv[1].value == datetime(2024, 5, 6, 7, 15)
    counters = decode_read_response(
        build_read_response(ADDR, 0x03010000, [1, 30, 0, 0, 2, 45]), version=V07
    ).values
    assert [v.value for v in counters] == [D(1), D(30), D(0), D(0), D(2), D(45)]
    assert counters[1].unit == "min"


def test_sign_bit() -> None:
    assert encode_bcd_number(D("-1.234"), 3, 3, signed=True) == bytes.fromhex("341280")
    assert decode_bcd_number(bytes.fromhex("341280"), 3, signed=True) == D("-1.234")
    # Without the sign convention 0x80 is the digit 8.
    assert decode_bcd_number(bytes.fromhex("341280"), 3) == D("801.234")
    assert decode_bcd_number(bytes.fromhex("000080"), 4, signed=True) == D("-0.0000")
    pf = decode_read_response(build_read_response(ADDR, 0x02060100, bytes.fromhex("5089")),
                              version=V07)
    assert pf.values[0].value == D("-0.950")
    with pytest.raises(DataError, match="negative but the item is unsigned"):
        encode_bcd_number(D("-1"), 2, 1)
    with pytest.raises(DataError, match="does not fit"):
        encode_bcd_number(D("80"), 1, 0, signed=True)


@pytest.mark.parametrize("filler", ["FFFF", "EEEE"])
def test_fillers_mean_not_available(filler: str) -> None:
    assert decode_bcd_number(bytes.fromhex(filler), 1) is None
    assert decode_value(bytes.fromhex("FFFFFFFFFF"), value_format("YYMMDDhhmm")) is None
    assert decode_value(bytes(5), value_format("YYMMDDhhmm")) is None
    assert decode_value(bytes(3), value_format("hhmmss")) == "00:00:00"


@pytest.mark.parametrize("raw", ["1A00", "FF0F", "00EE", "A0"])
def test_invalid_bcd_is_rejected(raw: str) -> None:
    with pytest.raises(DataError, match="invalid BCD"):
        decode_bcd_number(bytes.fromhex(raw), 1)


def test_invalid_date_is_rejected() -> None:
    with pytest.raises(DataError, match="YYMMDDhhmm"):
        decode_value(bytes.fromhex("0000011324"), value_format("YYMMDDhhmm"))  # month 13


def test_tariff_block_with_wrong_size() -> None:
    frame = build_read_response(ADDR, 0x0001FF00, bytes(6))
    with pytest.raises(DataError, match="whole tariff groups"):
        decode_read_response(frame, version=V07)


def test_requests() -> None:
    assert encode_frame(build_read_request(ADDR, 0x00010000), preamble=4).hex(" ").upper() == (
        "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
    assert encode_frame(build_read_request("999999999999", 0x9010, V97), preamble=0) == (
        bytes.fromhex("68999999999999680102 43C3 6F16"))
    assert encode_frame(build_read_address(), preamble=4) == bytes.fromhex(
        "FEFEFEFE68AAAAAAAAAAAA681300DF16")
    followup = build_read_followup(ADDR, 0x06000000, 2)
    assert followup.control == 0x12 and followup.data == bytes.fromhex("0000000602")
    assert build_read_followup(ADDR, 0x9010, 2, V97).data == bytes.fromhex("1090")
    load = build_read_request(ADDR, 0x06000001, blocks=3, since=datetime(2024, 1, 2, 3, 4))
    assert load.data == bytes.fromhex("01000006 03 0403020124".replace(" ", ""))
    request = decode_read_request(load)
    assert (request.di, request.extra, request.follow_up) == (0x06000001, bytes.fromhex(
        "030403020124"), False)
    assert decode_read_request(followup).seq == 2
    with pytest.raises(DataError):
        build_read_request(ADDR, 0x00010000, blocks=2)
    with pytest.raises(DataError):
        build_read_request(ADDR, 0x1234567, V97)


def test_time_sync_encoding() -> None:
    when = datetime(2024, 3, 9, 14, 5, 7)
    frame = build_time_sync(when)
    assert frame.address == ADDRESS_BROADCAST
    assert frame.control == 0x08
    assert frame.data == bytes.fromhex("070514090324")  # ss mm hh DD MM YY
    assert encode_frame(frame, preamble=0).hex().upper() == (
        "68999999999999680806" "3A38473C3657" "F616")  # CS 0xF6 checked by hand
    assert decode_time_sync(_round(frame)) == when
    assert build_time_sync(when, V97).data == frame.data
    assert describe_frame(encode_frame(frame))["values"] == [
        {"name": "broadcast time", "value": "2024-03-09T14:05:07", "unit": None, "channel": None}
    ]
    with pytest.raises(DataError):
        build_time_sync(datetime(1999, 12, 31))


def test_read_address_round_trip() -> None:
    reply = build_address_response("002241020208")
    assert encode_frame(reply, preamble=0) == bytes.fromhex(
        "6808020241220068930 63B35357455337916".replace(" ", ""))
    assert decode_address_response(_round(reply)) == "002241020208"
    assert build_read_address().address == ADDRESS_WILDCARD


def test_abnormal_replies_per_version() -> None:
    reply = build_abnormal_response(ADDR, 0x06)
    assert reply.control == 0xD1
    with pytest.raises(DeviceRejected) as info:
        decode_read_response(_round(reply), version=V07)
    assert info.value.reasons == ("no requested data", "password error or unauthorised")
    reply97 = build_abnormal_response(ADDR, 0x06, V97)
    assert reply97.control == 0xC1
    with pytest.raises(DeviceRejected) as info:
        decode_read_response(reply97, version=V97)
    assert info.value.reasons == ("data identifier error", "password error")


def test_reply_checks() -> None:
    reply = build_read_response(ADDR, 0x00010000, [D("1.00")])
    with pytest.raises(UnexpectedReply, match="expected 00020000"):
        decode_read_response(reply, version=V07, expected_di=0x00020000)
    with pytest.raises(UnexpectedReply):
        decode_read_response(reply, version=V97)
    with pytest.raises(UnexpectedReply):
        decode_read_response(build_read_request(ADDR, 0x00010000), version=V07)
    unknown = decode_read_response(build_read_response(ADDR, 0x0400FFFF, b"\x01\x02"),
                                   version=V07)
    assert unknown.values == () and unknown.payload == b"\x01\x02" and unknown.spec is None
    follow = build_read_response(ADDR, 0x00010000, [D("1.00")], follow_up=True, seq=3)
    decoded = decode_read_response(follow, version=V07)
    assert (decoded.seq, decoded.follow_up, decoded.values[0].value) == (3, True, D("1.00"))
    assert decoded.spec is lookup_di(0x00010000)


def test_event_record_keeps_the_rest_raw() -> None:
    payload = bytes.fromhex("000000010124" "300000010124") + bytes(20)
    values = decode_read_response(build_read_response(ADDR, 0x03010101, payload),
                                  version=V07).values
    assert [v.value for v in values] == [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 0, 30)]


def test_load_profile_record() -> None:
    record = encode_load_record(
        datetime(2024, 1, 2, 3, 15),
        {1: [D("230.1"), D("231.0"), None, D("1.5"), D("-0.5"), D("0"), D("50.01")],
         3: [D("0.99"), D("1"), D("-0.5"), D("0.8")]},
    )
    assert record[:2] == b"\xa0\xa0" and record[-1] == 0xE5
    reply = build_read_response(ADDR, 0x06000002, record + record)
    values = decode_read_response(_round(reply), version=V07).values
    assert len(values) == 2 * (1 + 7 + 4)
    assert values[0].value == datetime(2024, 1, 2, 3, 15)
    assert values[7] == DataValue("grid frequency", D("50.01"), "Hz", "14.7.0")
    assert values[5].value == D("-0.500") and values[3].value is None
    assert values[10].value == D("-0.500")
    broken = bytearray(record)
    broken[-2] ^= 1
    with pytest.raises(DataError, match="load record checksum"):
        decode_read_response(build_read_response(ADDR, 0x06000002, bytes(broken)), version=V07)


def test_expected_response_length() -> None:
    assert expected_response_length(0x00010000, V07, preamble=0) == 20
    assert expected_response_length(0x00010000, V07) == 24
    assert expected_response_length(0x0001FF00, V07, preamble=0) == 36
    assert expected_response_length(0x0201FF00, V07, preamble=0) == 22
    assert expected_response_length(0x9010, V97, preamble=0) == 18
    assert expected_response_length(0x06000000, V07, preamble=0) == 12 + 4 + 103
    assert expected_response_length(0x7FFFFFFF, V07, preamble=0) == 212


def test_describe_frame_outputs() -> None:
    raw = bytes.fromhex("68 12 00 00 00 10 20 68 91 0A 33 32 34 35 89 55 32 32 32 32 21 16")
    assert describe_frame(raw) == {
        "protocol": "dlt645-2007",
        "address": "201000000012",
        "control": 0x91,
        "direction": "response",
        "abnormal": False,
        "follow_up": False,
        "function": 0x11,
        "di": "0201FF00",
        "values": [
            {"name": "A phase voltage", "value": "225.6", "unit": "V", "channel": "32.7.0"},
            {"name": "B phase voltage", "value": None, "unit": "V", "channel": "52.7.0"},
            {"name": "C phase voltage", "value": None, "unit": "V", "channel": "72.7.0"},
        ],
        "unit": "V",
        "error": None,
        "data_hex": "00FF01025622FFFFFFFF",
    }
    request = describe_frame(bytes.fromhex("FEFE 68 99 99 99 99 99 99 68 01 02 52 C3 7E 16"))
    assert (request["protocol"], request["direction"], request["di"], request["values"]) == (
        "dlt645-1997", "request", "901F", [])
    abnormal = describe_frame(bytes.fromhex("68 12 00 00 00 10 20 68 D1 01 35 19 16"))
    assert (abnormal["abnormal"], abnormal["di"], abnormal["error"], abnormal["unit"]) == (
        True, None, ["no requested data"], None)
    address = describe_frame(bytes.fromhex("68 01 00 00 00 00 00 68 93 06 34 33 33 33 33 33 9D 16"))
    assert address["values"][0]["value"] == "000000000001"
    assert address["di"] is None
    with pytest.raises(Exception, match=r"checksum mismatch: computed 0x21, frame has 0x22"):
        describe_frame(raw[:-2] + b"\x22\x16")
