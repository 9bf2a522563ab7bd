"""Serial (RS-485) transport over pyserial-asyncio-fast; the only module that imports pyserial."""

from __future__ import annotations

import os
import stat

import serial
import serial_asyncio_fast

from amigate.errors import ConnectionLost, PortUnavailable, ReadTimeout, TransportError
from amigate.transports.base import ExceptionMap, StreamTransport, map_exceptions

#: How pyserial's and the OS's errors become amigate errors once the port is open.
SERIAL_EXCEPTION_MAP: ExceptionMap = {
    TimeoutError: ReadTimeout,
    serial.SerialTimeoutException: ReadTimeout,
    ConnectionResetError: ConnectionLost,
    EOFError: ConnectionLost,
    serial.SerialException: TransportError,
    OSError: TransportError,
}


async def open_serial(
    port: str,
    *,
    baudrate: int = 2400,
    bytesize: int = 8,
    parity: str = "E",
    stopbits: float = 1,
) -> StreamTransport:
    """Open a serial port and return a transport over it.

    Args:
        port: the device path (``/dev/ttyUSB0``, or a pseudo-terminal).
        baudrate: line speed in bit/s.
        bytesize: data bits per character.
        parity: ``"N"``, ``"E"``, ``"O"``, ``"M"`` or ``"S"``.
        stopbits: 1, 1.5 or 2.

    Returns:
        The opened transport.

    Raises:
        PortUnavailable: the port does not exist, is busy or refuses the settings.
    """
    name = f"serial://{port}"
    mapping: ExceptionMap = {serial.SerialException: PortUnavailable, OSError: PortUnavailable}
    if is_pseudo_terminal(port):
        # A pty has no line: bytes pass unchanged whatever the settings, and recent
        # Linux kernels refuse PARENB on one with EINVAL. Open it without parity.
        parity = "N"
    with map_exceptions(mapping, context=f"open {name}"):
        reader, writer = await serial_asyncio_fast.open_serial_connection(
            url=port,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
        )
    return StreamTransport(reader, writer, name=name, exception_map=SERIAL_EXCEPTION_MAP)


def is_pseudo_terminal(port: str) -> bool:
    """Tell whether ``port`` is the slave side of a Unix 98 pseudo-terminal.

    Args:
        port: a device path.

    Returns:
        True for ``/dev/pts/N`` devices (character major 136-143), false otherwise,
        including for paths that do not exist.
    """
    try:
        info = os.stat(port)
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) and 136 <= os.major(info.st_rdev) <= 143
