"""Transport URL parsing."""

from __future__ import annotations

import pytest

from amigate.errors import ConfigError
from amigate.transports import SerialParams, TcpParams, parse_url


def test_serial_url_defaults_to_2400_8e1() -> None:
    params = parse_url("serial:///dev/ttyUSB0")
    assert params == SerialParams(port="/dev/ttyUSB0", baudrate=2400, bytesize=8, parity="E")
    assert isinstance(params, SerialParams)
    assert params.bits_per_char == 11


def test_serial_url_with_every_parameter() -> None:
    params = parse_url("serial:///dev/ttyS1?baud=1200&parity=n&stopbits=2&bytesize=7")
    assert params == SerialParams(
        port="/dev/ttyS1", baudrate=1200, bytesize=7, parity="N", stopbits=2
    )


def test_serial_url_round_trips_through_its_canonical_form() -> None:
    params = parse_url("serial:///dev/ttyUSB3?baud=9600")
    assert parse_url(params.url) == params


def test_tcp_url() -> None:
    params = parse_url("tcp://10.0.0.5:8899")
    assert params == TcpParams(host="10.0.0.5", port=8899)
    assert params.url == "tcp://10.0.0.5:8899"


def test_tcp_url_with_connect_timeout_and_ipv6() -> None:
    assert parse_url("tcp://[::1]:502?connect_timeout=2.5") == TcpParams(
        host="::1", port=502, connect_timeout=2.5
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("/dev/ttyUSB0", "no scheme"),
        ("http://x:1", "unknown scheme 'http'"),
        ("serial://", "no device path"),
        ("serial:///dev/ttyUSB0?baud=2401", "baud=2401"),
        ("serial:///dev/ttyUSB0?baud=fast", "baud='fast' is not an integer"),
        ("serial:///dev/ttyUSB0?parity=X", "parity='X'"),
        ("serial:///dev/ttyUSB0?stopbits=3", "stopbits=3"),
        ("serial:///dev/ttyUSB0?bytesize=9", "bytesize=9"),
        ("serial:///dev/ttyUSB0?speed=2400", "unknown parameter(s) speed"),
        ("tcp://host", "no port"),
        ("tcp://host:notaport", "port is not a number"),
        ("tcp://:502", "no host"),
        ("tcp://host:0", "port 0 is outside"),
        ("tcp://host:502/path", "unexpected path"),
        ("tcp://host:502?connect_timeout=soon", "connect_timeout='soon'"),
    ],
)
def test_invalid_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    assert problem in str(info.value)
