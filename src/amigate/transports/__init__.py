"""Byte pipes to meter buses: serial ports, TCP serial servers, and an in-memory fake."""

from __future__ import annotations

from amigate.transports.base import (
    DEFAULT_EXCEPTION_MAP,
    StreamTransport,
    Transport,
    map_exceptions,
)
from amigate.transports.mock import Late, MockTransport
from amigate.transports.url import (
    SerialParams,
    TcpParams,
    TransportParams,
    open_transport,
    parse_url,
)

__all__ = [
    "DEFAULT_EXCEPTION_MAP",
    "Late",
    "MockTransport",
    "SerialParams",
    "StreamTransport",
    "TcpParams",
    "Transport",
    "TransportParams",
    "map_exceptions",
    "open_transport",
    "parse_url",
]
