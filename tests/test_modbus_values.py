"""Modbus register decoding: word order, sign, 64-bit, float32 resolution, sentinels."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amigate.codecs.modbus_values import (
    decode_number,
    decode_value,
    encode_number,
    encode_value,
    max_sentinel,
    register_count,
    value_resolution,
)
from amigate.errors import DataError

VECTORS = [
    # (id, registers, dtype, word_order, expected raw number)
    ("uint16", [0xFFFF], "uint16", "big", 65535),
    ("int16 negative", [0xFFFF], "int16", "big", -1),
    ("int16 pf -0.95 x1000", [0xFC4A], "int16", "big", -950),
    ("uint32 ABCD", [0x0001, 0xE240], "uint32", "big", 123456),
    ("uint32 CDAB", [0xE240, 0x0001], "uint32", "little", 123456),
    ("uint32 CDAB read as ABCD", [0x0001, 0xE240], "uint32", "little", 3795845121),
    ("int32 ABCD negative", [0xFFFE, 0x1DC0], "int32", "big", -123456),
    ("int32 CDAB negative", [0x1DC0, 0xFFFE], "int32", "little", -123456),
    ("uint64 ABCD", [0x0000, 0x0001, 0x0000, 0x0000], "uint64", "big", 1 << 32),
    ("uint64 big value", [0x0123, 0x4567, 0x89AB, 0xCDEF], "uint64", "big", 0x0123456789ABCDEF),
    ("uint64 CDAB", [0xCDEF, 0x89AB, 0x4567, 0x0123], "uint64", "little", 0x0123456789ABCDEF),
    ("int64 negative", [0xFFFF, 0xFFFF, 0xFFFF, 0xFF85], "int64", "big", -123),
    ("float32 230.0 ABCD", [0x4366, 0x0000], "float32", "big", 230.0),
    ("float32 230.0 CDAB", [0x0000, 0x4366], "float32", "little", 230.0),
    ("float32 -1.5", [0xBFC0, 0x0000], "float32", "big", -1.5),
    ("float64 1.0", [0x3FF0, 0, 0, 0], "float64", "big", 1.0),
]


@pytest.mark.parametrize(("registers", "dtype", "order", "expected"),
                         [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])  # fmt: skip
def test_decode_vectors(registers: list[int], dtype: str, order: str, expected: float) -> None:
    assert decode_number(registers, dtype, order) == expected
    assert encode_number(expected, dtype, order) == registers


def test_scaled_values_are_exact_decimals() -> None:
    # Carlo Gavazzi voltage: int32 CDAB, x0.1 V.
    assert decode_value([2305, 0], "int32", "little", scale=Decimal("0.1")) == Decimal("230.5")
    # ABB energy: uint64 x0.01 kWh, beyond what a float could hold exactly.
    raw = 12_345_678_901_234_567
    words = encode_number(raw, "uint64")
    assert decode_value(words, "uint64", scale=Decimal("0.01")) == Decimal("123456789012345.67")
    # Chint DTSU666: a float holding 2305 tenths of a volt.
    assert decode_value(encode_number(2305.0, "float32"), "float32", scale=Decimal("0.1")) == (
        Decimal("230.5")
    )


def test_float32_decodes_to_its_shortest_decimal() -> None:
    words = encode_number(230.1, "float32")
    assert decode_value(words, "float32") == Decimal("230.1")
    assert decode_number(words, "float32") != 230.1  # the float itself is not 230.1


@pytest.mark.parametrize(
    ("value", "step"),
    [(Decimal("10000"), Decimal("0.0009765625")), (Decimal("100000"), Decimal("0.0078125")),
     (Decimal("1000000"), Decimal("0.0625"))],
)  # fmt: skip
def test_float32_energy_resolution_degrades_with_the_total(value: Decimal, step: Decimal) -> None:
    # 10 MWh steps by about 1 Wh, 100 MWh by 7.8 Wh, 1 GWh by 62.5 Wh (values in kWh).
    assert value_resolution(value, "float32") == step
    bumped = decode_value(encode_value(value + step / 3, "float32"), "float32")
    assert bumped == value  # a third of a step is lost: a 15-minute delta can vanish
    assert value_resolution(value, "int64", Decimal(1)) == 1


def test_sentinels_and_nan_are_missing() -> None:
    assert max_sentinel("uint32") == 0xFFFFFFFF
    assert max_sentinel("int16") == 0x7FFF
    assert max_sentinel("uint64") == (1 << 64) - 1
    assert max_sentinel("float32") is None
    assert decode_value([0xFFFF, 0xFFFF], "uint32", sentinels=[0xFFFFFFFF]) is None
    assert decode_value([0x7FFF], "int16", sentinels=[0x7FFF]) is None
    assert decode_value([0x7FFE], "int16", sentinels=[0x7FFF]) == Decimal(32766)
    nan = struct.unpack(">HH", struct.pack(">f", math.nan))
    assert decode_value(list(nan), "float32") is None
    assert decode_value([0x7F80, 0x0000], "float32") is None  # +inf


@pytest.mark.parametrize(
    ("registers", "dtype", "order", "problem"),
    [
        ([1], "uint32", "big", "needs 2 register"),
        ([1, 2, 3], "float32", "big", "needs 2 register"),
        ([0x10000], "uint16", "big", "within 0..65535"),
        ([1], "uint24", "big", "unknown Modbus data type"),
        ([1, 2], "int32", "middle", "word order"),
    ],
)
def test_bad_input_raises_data_error(
    registers: list[int], dtype: str, order: str, problem: str
) -> None:
    with pytest.raises(DataError, match=problem):
        decode_number(registers, dtype, order)


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(DataError, match="does not fit uint16"):
        encode_number(70000, "uint16")
    with pytest.raises(DataError, match="does not fit uint32"):
        encode_value(Decimal(-1), "uint32")
    with pytest.raises(DataError, match="needs an integer"):
        encode_number(1.5, "int32")


@given(
    st.sampled_from(["uint16", "int16", "uint32", "int32", "uint64", "int64"]),
    st.sampled_from(["big", "little"]),
    st.integers(),
)
def test_integer_round_trip(dtype: str, order: str, number: int) -> None:
    bits = 16 * register_count(dtype)
    low, high = (
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype[0] == "i" else (0, (1 << bits) - 1)
    )
    number = low + number % (high - low + 1)
    words = encode_number(number, dtype, order)
    assert len(words) == register_count(dtype)
    assert decode_number(words, dtype, order) == number


@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"])
)
def test_float32_round_trip(number: float, order: str) -> None:
    value = decode_value(encode_number(number, "float32", order), "float32", order)
    assert value is not None
    assert struct.pack(">f", float(value)) == struct.pack(">f", number)
