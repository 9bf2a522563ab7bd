"""TCP transport, for transparent serial servers and DTUs that forward bus bytes unchanged."""

from __future__ import annotations

import asyncio

from amigate.errors import ConnectTimeout, PortUnavailable
from amigate.transports.base import ExceptionMap, StreamTransport, map_exceptions


async def open_tcp(host: str, port: int, *, connect_timeout: float = 5.0) -> StreamTransport:
    """Connect to ``host:port`` and return a transport over the connection.

    Args:
        host: name or address of the serial server.
        port: its TCP port.
        connect_timeout: seconds allowed for the connection to be established.

    Returns:
        The connected transport.

    Raises:
        ConnectTimeout: the server did not accept the connection in time.
        PortUnavailable: the connection was refused or the host is unreachable.
    """
    name = f"tcp://{host}:{port}"
    mapping: ExceptionMap = {TimeoutError: ConnectTimeout, OSError: PortUnavailable}
    with map_exceptions(mapping, context=f"connect to {name}"):
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(host, port)
    return StreamTransport(reader, writer, name=name)
