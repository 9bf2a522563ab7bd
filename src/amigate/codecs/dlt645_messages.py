"""DL/T 645 request builders and response decoders on top of frames, values and the catalogue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple, NoReturn

from amigate.codecs.dlt645_catalogue import (
    BY_WIRE_DI,
    Category,
    DiSpec,
    di_size,
    find_di,
    lookup_di,
)
from amigate.codecs.dlt645_frame import (
    CONTROL_ABNORMAL,
    CONTROL_FOLLOW_UP,
    CONTROL_RESPONSE,
    Dlt645Version,
    Frame,
    Function1997,
    Function2007,
)
from amigate.codecs.dlt645_payload import DataValue, decode_values, encode_fields
from amigate.codecs.dlt645_values import Value, encode_value, value_format
from amigate.errors import DataError, DeviceRejected, UnexpectedReply

__all__ = [
    "ERROR_BITS",
    "DataValue",
    "ReadRequest",
    "ReadResponse",
    "build_abnormal_response",
    "build_read_followup",
    "build_read_request",
    "build_read_response",
    "decode_error",
    "decode_read_request",
    "decode_read_response",
    "expected_response_length",
]

V07: Final = Dlt645Version.V2007
V97: Final = Dlt645Version.V1997

#: Meaning of each bit of the abnormal-reply error byte, bit 0 first (reference §4.3).
ERROR_BITS: Final[Mapping[Dlt645Version, tuple[str, ...]]] = {
    V07: (
        "other error",
        "no requested data",
        "password error or unauthorised",
        "baud rate cannot be changed",
        "year time-zone count exceeded",
        "daily time-slot count exceeded",
        "tariff count exceeded",
        "reserved bit 7",
    ),
    V97: (
        "illegal data",
        "data identifier error",
        "password error",
        "reserved bit 3",
        "year time-zone count exceeded",
        "daily time-slot count exceeded",
        "tariff count exceeded",
        "reserved bit 7",
    ),
}

_READ: Final = {V07: Function2007.READ_DATA, V97: Function1997.READ_DATA}
_FOLLOW: Final = {V07: Function2007.READ_FOLLOW_UP, V97: Function1997.READ_FOLLOW_UP}
_MAX_REPLY: Final = 12 + 200
_WIRE_2007: Final = BY_WIRE_DI[V07]
_WIRE_1997: Final = BY_WIRE_DI[V97]
_new = tuple.__new__
# Constant slices of the fast reply path (spare a BUILD_SLICE per use).
_DI_2007: Final = slice(None, 4)
_AFTER_DI_2007: Final = slice(4, None)


class ReadResponse(NamedTuple):
    """A decoded normal reply to a read (or read follow-up) request (immutable).

    Attributes:
        address: meter address, 12 digits most significant first.
        version: protocol generation.
        di: the data identifier echoed by the meter.
        data: the frame's whole plain DATA field.
        payload: the bytes after the DI (without the follow-up sequence number).
        values: decoded values; empty for identifiers that are not catalogued.
        follow_up: the meter has more frames to send (read them with 12H / 02H).
        seq: sequence number of a follow-up reply (2007), else ``None``.
        spec: the catalogue entry, or ``None``.
    """

    address: str
    version: Dlt645Version
    di: int
    data: bytes
    payload: bytes
    values: tuple[DataValue, ...]
    follow_up: bool
    seq: int | None
    spec: DiSpec | None

    @property
    def di_hex(self) -> str:
        """The DI as 8 (2007) or 4 (1997) hex digits."""
        return f"{self.di:0{2 * di_size(self.version)}X}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadRequest:
    """A decoded read request, as a simulated meter sees it.

    Attributes:
        address: the addressed meter (may be the wildcard or broadcast address).
        version: protocol generation, from the function code.
        di: the requested identifier.
        follow_up: this is a read follow-up (12H / 02H).
        seq: follow-up sequence number (2007), else ``None``.
        extra: bytes after the DI (load-profile block count and start time).
    """

    address: str
    version: Dlt645Version
    di: int
    follow_up: bool
    seq: int | None
    extra: bytes


def _di_bytes(di: int, version: Dlt645Version) -> bytes:
    size = di_size(version)
    if not 0 <= di < 1 << (8 * size):
        raise DataError(f"DI 0x{di:X} does not fit in {size} bytes ({version.value})")
    return di.to_bytes(size, "little")


def build_read_request(
    address: str,
    di: int,
    version: Dlt645Version = V07,
    *,
    blocks: int | None = None,
    since: datetime | None = None,
) -> Frame:
    """Build a read-data request (2007: 11H, 1997: 01H).

    Args:
        address: meter address, 12 digits most significant first (or the wildcard).
        di: the identifier to read.
        version: protocol generation.
        blocks: load-profile requests (DI3 = 06) only: number of blocks N (default 1).
        since: load-profile "records from a given time" (DI0 = 01) only: the start time.

    Returns:
        The request frame.

    Raises:
        DataError: an identifier too large for the version, or load-profile
            parameters on an identifier that takes none.
    """
    data = _di_bytes(di, version)
    spec = find_di(di, version)
    if spec is not None and spec.category is Category.LOAD_PROFILE:
        count = 1 if blocks is None else blocks
        if not 1 <= count <= 99:
            raise DataError(f"load-profile block count must be 1..99, got {count}")
        data += bytes.fromhex(f"{count:02d}")
        if di & 0xFF == 0x01:
            if since is None:
                raise DataError(f"DI {spec.di_hex} needs the start time (since=)")
            data += encode_value(since, value_format("YYMMDDhhmm"))
    elif blocks is not None or since is not None:
        raise DataError("blocks/since apply only to load-profile identifiers (06xxxxxx)")
    return Frame(address, int(_READ[version]), data)


def build_read_followup(
    address: str, di: int, seq: int, version: Dlt645Version = V07
) -> Frame:
    """Build a read follow-up request (2007: 12H with DI + SEQ; 1997: 02H with DI).

    Args:
        address: meter address.
        di: the identifier being read.
        seq: frame sequence number, 1 for the first follow-up (ignored for 1997).
        version: protocol generation.

    Returns:
        The request frame.

    Raises:
        DataError: ``seq`` outside 0..255.
    """
    data = _di_bytes(di, version)
    if version is V07:
        if not 0 <= seq <= 0xFF:
            raise DataError(f"sequence number must be 0..255, got {seq}")
        data += bytes((seq,))
    return Frame(address, int(_FOLLOW[version]), data)


def decode_error(code: int, version: Dlt645Version) -> tuple[str, ...]:
    """Name the bits set in an abnormal reply's error byte.

    Args:
        code: the error byte (33H already removed).
        version: protocol generation; 2007 and 1997 assign the bits differently.

    Returns:
        One text per set bit, bit 0 first.
    """
    names = ERROR_BITS[version]
    return tuple(names[bit] for bit in range(8) if code >> bit & 1)


def build_abnormal_response(
    address: str, error: int, version: Dlt645Version = V07, *, function: int | None = None
) -> Frame:
    """Build an abnormal reply (control = function | C0H, DATA = error byte).

    Args:
        address: meter address.
        error: the error byte, e.g. 02H "no requested data" (2007).
        version: protocol generation (selects the default function).
        function: the rejected function code; defaults to read data.

    Returns:
        The reply frame.
    """
    func = int(_READ[version]) if function is None else function
    return Frame(address, CONTROL_RESPONSE | CONTROL_ABNORMAL | func, bytes((error & 0xFF,)))


def build_read_response(
    address: str,
    di: int,
    values_or_raw: bytes | Sequence[Value | int] | Mapping[str, Value | int],
    version: Dlt645Version = V07,
    *,
    follow_up: bool = False,
    seq: int | None = None,
) -> Frame:
    """Build a normal read reply, as a meter would (for the simulator and tests).

    Args:
        address: the meter's address.
        di: the identifier being answered.
        values_or_raw: the plain payload bytes, or the values in catalogue order
            (for tariff blocks the number of values sets the number of tariffs), or a
            mapping from field name or channel to value (missing -> filler).
        version: protocol generation.
        follow_up: set D5 (more frames follow).
        seq: append a sequence number and answer as a follow-up reply (2007, 92H).

    Returns:
        The reply frame.

    Raises:
        UnknownDataIdentifier: values given for an identifier that is not catalogued.
        DataError: values that do not fit their formats or the layout.
    """
    if isinstance(values_or_raw, bytes | bytearray):
        payload = bytes(values_or_raw)
    else:
        spec = lookup_di(di, version)
        if spec.category is Category.LOAD_PROFILE:
            raise DataError("load-profile replies take raw bytes; see encode_load_record")
        if spec.tariff_fields and not isinstance(values_or_raw, Mapping):
            group = len(spec.tariff_fields)
            count, rest = divmod(len(values_or_raw) - len(spec.fields), group)
            if rest or count < 0:
                raise DataError(f"DI {spec.di_hex}: {len(values_or_raw)} values do not fill "
                                f"the total and whole tariff groups of {group}")
            length = spec.fixed_length + count * sum(f.length for f in spec.tariff_fields)
        else:
            length = spec.length
        fields = spec.layout(length)
        if not isinstance(values_or_raw, Mapping) and len(values_or_raw) != len(fields):
            raise DataError(f"DI {spec.di_hex} takes {len(fields)} values, "
                            f"got {len(values_or_raw)}")
        payload = encode_fields(fields, values_or_raw)
    function = int(_READ[version])
    tail = b""
    if seq is not None:
        function = int(_FOLLOW[version])
        if version is V07:
            tail = bytes((seq & 0xFF,))
    control = CONTROL_RESPONSE | function | (CONTROL_FOLLOW_UP if follow_up else 0)
    return Frame(address, control, _di_bytes(di, version) + payload + tail)


def decode_read_response(
    frame: Frame, *, version: Dlt645Version, expected_di: int | None = None
) -> ReadResponse:
    """Decode a reply to a read or read follow-up request.

    Args:
        frame: the reply.
        version: the generation the request was sent in.
        expected_di: when given, the echoed DI must equal it.

    Returns:
        The decoded reply; values are empty for identifiers not in the catalogue.

    Raises:
        DeviceRejected: an abnormal reply; ``code`` is the error byte, ``reasons``
            its decoded bits for ``version``.
        UnexpectedReply: not a read reply of ``version``, or another DI than expected.
        DataError: a payload that does not decode.
    """
    control = frame.control
    data = frame.data
    if control == 0x91 and version is V07:
        # The usual reply (2007 read, no follow-up) to a catalogued DI whose decoder for
        # this payload length is built: the same result as the general path below.
        try:
            known = _WIRE_2007[data[_DI_2007]]
            decode = known.decoders[len(data) - 4]
        except KeyError:
            pass  # not catalogued, or no decoder built yet for this length
        else:
            di = known.di
            if expected_di is None or expected_di == di:
                payload = data[_AFTER_DI_2007]
                return _new(ReadResponse, (frame.address, version, di, data, payload,
                                           decode(payload), False, None, known))
    if version is V07:
        size, follow, by_wire = 4, 0x12, _WIRE_2007
        normal = control & 0xDF == 0x91 or control & 0xDF == 0x92  # D5 (follow-up) masked
    else:
        size, follow, by_wire = 2, 0x02, _WIRE_1997
        normal = control & 0xDF == 0x81 or control & 0xDF == 0x82
    if not normal:
        _raise_not_normal(frame, version)
    if len(data) < size:
        raise DataError(f"reply data is {len(data)} bytes, shorter than the {size}-byte DI")
    spec = by_wire.get(data[:size])
    di = spec.di if spec is not None else int.from_bytes(data[:size], "little")
    if expected_di is not None and di != expected_di:
        raise UnexpectedReply(
            f"reply is for DI {di:0{2 * size}X}, expected {expected_di:0{2 * size}X}"
        )
    seq: int | None = None
    payload = data[size:]
    if control & 0x1F == follow and size == 4 and payload:
        seq = payload[-1]
        payload = payload[:-1]
    values = decode_values(spec, payload) if spec is not None else ()
    return _new(ReadResponse, (frame.address, version, di, data, payload, values,
                               control & CONTROL_FOLLOW_UP != 0, seq, spec))


def _raise_not_normal(frame: Frame, version: Dlt645Version) -> NoReturn:
    """Raise for a frame that is not a normal read reply of ``version``.

    Raises:
        UnexpectedReply: not a read reply of ``version``.
        DeviceRejected: an abnormal reply; ``code`` is the error byte, ``reasons``
            its decoded bits for ``version``.
    """
    control = frame.control
    function = control & 0x1F
    read, follow = (0x11, 0x12) if version is V07 else (0x01, 0x02)
    if not control & CONTROL_RESPONSE or (function != read and function != follow):
        raise UnexpectedReply(
            f"expected a {version.value} read reply, got control 0x{control:02X}"
        )
    data = frame.data
    code = data[0] if data else 0
    reasons = decode_error(code, version)
    raise DeviceRejected(
        f"meter {frame.address} rejected the read: {', '.join(reasons) or 'no reason given'}"
        f" (error byte 0x{code:02X})",
        code=code,
        reasons=reasons,
    )


def decode_read_request(frame: Frame) -> ReadRequest:
    """Decode a read or read follow-up request (what a simulated meter receives).

    Args:
        frame: the request.

    Returns:
        The request's contents; the version is taken from the function code.

    Raises:
        UnexpectedReply: the frame is not a read request.
        DataError: the data field is shorter than a DI.
    """
    version = frame.version
    function = frame.function
    if frame.is_response or function not in (_READ[version], _FOLLOW[version]):
        raise UnexpectedReply(f"not a read request: control 0x{frame.control:02X}")
    size = di_size(version)
    if len(frame.data) < size:
        raise DataError(f"read request carries {len(frame.data)} bytes, less than a DI")
    di = int.from_bytes(frame.data[:size], "little")
    extra = frame.data[size:]
    follow = function == _FOLLOW[version]
    seq = extra[0] if follow and version is V07 and extra else None
    return ReadRequest(address=frame.address, version=version, di=di, follow_up=follow,
                       seq=seq, extra=b"" if seq is not None else extra)


def expected_response_length(di: int, version: Dlt645Version = V07, *, preamble: int = 4) -> int:
    """Bytes on the wire of a normal reply to a read of ``di``, for timeouts.

    Tariff blocks are counted with their nominal 4 tariffs; load-profile reads
    with one record. Identifiers not in the catalogue get the largest reply the
    standard allows (L = 200).

    Args:
        di: the identifier.
        version: protocol generation.
        preamble: FE bytes the meter may send first (up to 4 in the field).

    Returns:
        ``preamble + 12 + DI size + payload length``.
    """
    spec = find_di(di, version)
    if spec is None:
        return preamble + _MAX_REPLY
    return preamble + 12 + di_size(version) + spec.length


