"""Human- and JSON-oriented description of one DL/T 645 frame (``amigate frame decode``)."""

from __future__ import annotations

from typing import Any, Final

from amigate.codecs.dlt645_catalogue import di_size
from amigate.codecs.dlt645_commands import decode_address_response, decode_time_sync
from amigate.codecs.dlt645_frame import Dlt645Version, Function1997, Function2007, decode_frame
from amigate.codecs.dlt645_messages import decode_error, decode_read_response
from amigate.codecs.dlt645_payload import DataValue, value_to_json

__all__ = ["describe_frame"]

# Functions whose DATA starts with a DI, per version.
_WITH_DI: Final = {
    Dlt645Version.V2007: frozenset(
        {Function2007.READ_DATA, Function2007.READ_FOLLOW_UP, Function2007.WRITE_DATA}
    ),
    Dlt645Version.V1997: frozenset(
        {
            Function1997.READ_DATA,
            Function1997.READ_FOLLOW_UP,
            Function1997.REREAD_DATA,
            Function1997.WRITE_DATA,
        }
    ),
}
_READS: Final = {
    Dlt645Version.V2007: frozenset({Function2007.READ_DATA, Function2007.READ_FOLLOW_UP}),
    Dlt645Version.V1997: frozenset({Function1997.READ_DATA, Function1997.READ_FOLLOW_UP}),
}


def _json_value(value: DataValue) -> dict[str, Any]:
    return {
        "name": value.name,
        "value": value_to_json(value.value),
        "unit": value.unit,
        "channel": value.channel,
    }


def describe_frame(raw: bytes) -> dict[str, Any]:
    """Decode one frame and describe it as a JSON-ready dict.

    The protocol generation is inferred from the function code. Read replies of
    catalogued identifiers have their values decoded; read-address replies and
    broadcast time sets show the address or time as their single value.

    Args:
        raw: exactly one frame, optionally after FE preambles.

    Returns:
        A dict with the keys ``protocol``, ``address``, ``control``, ``direction``,
        ``abnormal``, ``follow_up``, ``function``, ``di`` (hex or ``None``),
        ``values`` (list of ``{name, value, unit, channel}``, numbers as strings),
        ``unit`` (of the first value or ``None``), ``error`` (decoded error bits of
        an abnormal reply, else ``None``) and ``data_hex`` (the plain DATA field,
        33H removed).

    Raises:
        ChecksumError: the checksum does not match (the message gives both values).
        FrameFormatError: start byte, length field or end byte is wrong.
        DataError: a catalogued value does not decode (invalid BCD, bad date).
    """
    frame = decode_frame(raw)
    version = frame.version
    function = frame.function
    di: str | None = None
    values: tuple[DataValue, ...] = ()
    error: list[str] | None = None
    if frame.abnormal:
        error = list(decode_error(frame.data[0] if frame.data else 0, version))
    elif function in _WITH_DI[version] and len(frame.data) >= di_size(version):
        size = di_size(version)
        di = f"{int.from_bytes(frame.data[:size], 'little'):0{2 * size}X}"
        if frame.is_response and function in _READS[version]:
            values = decode_read_response(frame, version=version).values
    elif frame.control == 0x93:
        address = decode_address_response(frame)
        values = (DataValue("communication address", address, None, None),)
    elif function == Function2007.BROADCAST_TIME and not frame.is_response:
        values = (DataValue("broadcast time", decode_time_sync(frame), None, None),)
    return {
        "protocol": version.value,
        "address": frame.address,
        "control": frame.control,
        "direction": frame.direction,
        "abnormal": frame.abnormal,
        "follow_up": frame.follow_up,
        "function": function,
        "di": di,
        "values": [_json_value(v) for v in values],
        "unit": values[0].unit if values else None,
        "error": error,
        "data_hex": frame.data.hex().upper(),
    }
