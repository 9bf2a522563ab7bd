"""Modbus bus URLs: RTU on a serial port, RTU over TCP, Modbus TCP."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from amigate.errors import ConfigError
from amigate.transports.url import SerialParams, TcpParams, parse_url

__all__ = ["ModbusTarget", "parse_modbus_url"]

_MODES = {"serial": "rtu", "rtu+tcp": "rtu+tcp", "modbus+tcp": "modbus+tcp"}


@dataclass(frozen=True, kw_only=True)
class ModbusTarget:
    """Where a Modbus bus is reached and how.

    Attributes:
        mode: ``rtu`` (serial port), ``rtu+tcp`` (transparent gateway) or ``modbus+tcp``.
        url: the URL it was parsed from.
        serial: the port settings for ``rtu``.
        tcp: the endpoint for the TCP modes.
    """

    mode: str
    url: str
    serial: SerialParams | None = None
    tcp: TcpParams | None = None


def parse_modbus_url(url: str, *, baud: int = 9600, parity: str = "N") -> ModbusTarget:
    """Parse a Modbus bus URL.

    Args:
        url: ``serial:///dev/ttyUSB0?baud=9600&parity=N``, ``rtu+tcp://HOST:PORT`` or
            ``modbus+tcp://HOST:PORT``.
        baud: the line speed when a serial URL gives none (the model's default).
        parity: the parity when a serial URL gives none.

    Returns:
        The parsed target.

    Raises:
        ConfigError: a malformed URL or an unknown scheme (``tcp://`` is refused as
            ambiguous: a gateway speaks either RTU over TCP or Modbus TCP).
    """
    parts = urlsplit(url)
    mode = _MODES.get(parts.scheme)
    if mode is None:
        raise ConfigError(
            f"Modbus URL {url!r}: use serial:///dev/ttyUSB0?baud=9600&parity=N, "
            "rtu+tcp://HOST:PORT (transparent RS-485 gateway) or modbus+tcp://HOST:PORT"
        )
    if mode == "rtu":
        query = parts.query
        for key, value in (("baud", str(baud)), ("parity", parity)):
            if f"{key}=" not in query:
                query = f"{query}&{key}={value}" if query else f"{key}={value}"
        params = parse_url(parts._replace(query=query).geturl())
        assert isinstance(params, SerialParams)
        return ModbusTarget(mode=mode, url=url, serial=params)
    tcp = parse_url(parts._replace(scheme="tcp").geturl())
    assert isinstance(tcp, TcpParams)
    return ModbusTarget(mode=mode, url=url, tcp=tcp)
