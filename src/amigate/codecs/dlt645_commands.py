"""DL/T 645 link commands: read communication address (13H) and broadcast time set (08H)."""

from __future__ import annotations

from datetime import datetime

from amigate.codecs.dlt645_frame import (
    ADDRESS_BROADCAST,
    ADDRESS_WILDCARD,
    Dlt645Version,
    Frame,
    Function2007,
)
from amigate.codecs.dlt645_values import decode_value, encode_value, value_format
from amigate.errors import DataError, UnexpectedReply

__all__ = [
    "build_address_response",
    "build_read_address",
    "build_time_sync",
    "decode_address_response",
    "decode_time_sync",
]

V07 = Dlt645Version.V2007


def build_read_address(address: str = ADDRESS_WILDCARD) -> Frame:
    """Build a read-communication-address request (2007 only, 13H, no data).

    Args:
        address: normally the wildcard; partial wildcards (``AAAAAAAA0161``) also work.

    Returns:
        The request frame.
    """
    return Frame(address, int(Function2007.READ_ADDRESS), b"")


def build_address_response(address: str) -> Frame:
    """Build a meter's reply to read-address (93H, the address low byte first).

    Args:
        address: the meter's real address.

    Returns:
        The reply frame.
    """
    return Frame(address, 0x93, bytes.fromhex(address)[::-1])


def decode_address_response(frame: Frame) -> str:
    """Return the address carried by a read-address reply.

    Args:
        frame: a 93H frame.

    Returns:
        The 12 address digits, most significant first.

    Raises:
        UnexpectedReply: the frame is not a normal read-address reply.
        DataError: the data field is not 6 bytes.
    """
    if frame.control != 0x93:
        raise UnexpectedReply(f"expected a read-address reply (0x93), got 0x{frame.control:02X}")
    if len(frame.data) != 6:
        raise DataError(f"read-address reply carries {len(frame.data)} bytes instead of 6")
    return frame.data[::-1].hex().upper()


def build_time_sync(
    when: datetime, version: Dlt645Version = V07, *, address: str = ADDRESS_BROADCAST
) -> Frame:
    """Build a broadcast time set (08H). Meters do not answer it.

    DATA is ``ss mm hh DD MM YY`` (BCD, seconds first) in both generations; the
    1997 layout is [U] in the protocol reference. Meter clocks run on local time:
    pass ``when`` as the meter's wall-clock time (its tzinfo, if any, is ignored).

    Args:
        when: the time to set.
        version: protocol generation (the function code is 08H in both).
        address: normally the broadcast address.

    Returns:
        The request frame.

    Raises:
        DataError: a year outside 2000..2099.
    """
    del version  # same layout in both generations
    return Frame(
        address, int(Function2007.BROADCAST_TIME), encode_value(when, value_format("YYMMDDhhmmss"))
    )


def decode_time_sync(frame: Frame) -> datetime:
    """Return the time carried by a broadcast time set.

    Args:
        frame: an 08H frame.

    Returns:
        The (naive, meter-local) time.

    Raises:
        UnexpectedReply: not an 08H request.
        DataError: wrong length or an invalid date.
    """
    if frame.control != Function2007.BROADCAST_TIME:
        raise UnexpectedReply(f"expected a time-set frame (0x08), got 0x{frame.control:02X}")
    fmt = value_format("YYMMDDhhmmss")
    value = decode_value(frame.data, fmt) if len(frame.data) == fmt.length else None
    if not isinstance(value, datetime):
        raise DataError(f"time-set data must be 6 valid BCD bytes, got {frame.data.hex(' ')}")
    return value
