"""DL/T 645-2007 and -1997 link-layer frames: layout, control byte, checksum and the 0x33 offset."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, Literal

from amigate.errors import ChecksumError, FrameFormatError

__all__ = [
    "ADDRESS_BROADCAST",
    "ADDRESS_WILDCARD",
    "CONTROL_ABNORMAL",
    "CONTROL_FOLLOW_UP",
    "CONTROL_FUNCTION_MASK",
    "CONTROL_RESPONSE",
    "END_BYTE",
    "MAX_DATA_LENGTH",
    "PREAMBLE_BYTE",
    "START_BYTE",
    "Dlt645Version",
    "Frame",
    "Function1997",
    "Function2007",
    "checksum",
    "decode_frame",
    "encode_frame",
    "version_of_function",
]

START_BYTE: Final = 0x68
END_BYTE: Final = 0x16
PREAMBLE_BYTE: Final = 0xFE
#: Largest value the one-byte length field can carry. The standard limits replies to 200.
MAX_DATA_LENGTH: Final = 255

#: Broadcast address (broadcast time set, freeze); meters never answer it.
ADDRESS_BROADCAST: Final = "999999999999"
#: Wildcard address, used with read-address when one meter is on the bus.
ADDRESS_WILDCARD: Final = "AAAAAAAAAAAA"

CONTROL_RESPONSE: Final = 0x80
CONTROL_ABNORMAL: Final = 0x40
CONTROL_FOLLOW_UP: Final = 0x20
CONTROL_FUNCTION_MASK: Final = 0x1F

# Every DATA byte travels +0x33 (mod 256); bytes.translate with these tables is the fast path.
ADD_33: Final = bytes((i + 0x33) & 0xFF for i in range(256))
SUB_33: Final = bytes((i - 0x33) & 0xFF for i in range(256))

_ADDRESS_RE: Final = re.compile(r"[0-9A-F]{12}")
_HEADER_LENGTH: Final = 10  # 68 A0..A5 68 C L
_OVERHEAD: Final = 12  # header + CS + 16


class Dlt645Version(enum.Enum):
    """Protocol generation; the value is the protocol name used in descriptions."""

    V2007 = "dlt645-2007"
    V1997 = "dlt645-1997"


class Function2007(enum.IntEnum):
    """DL/T 645-2007 function codes (control bits D4..D0)."""

    BROADCAST_TIME = 0x08
    READ_DATA = 0x11
    READ_FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13
    WRITE_DATA = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD = 0x17
    CHANGE_PASSWORD = 0x18
    DEMAND_RESET = 0x19
    METER_CLEAR = 0x1A
    EVENT_CLEAR = 0x1B
    CONTROL = 0x1C


class Function1997(enum.IntEnum):
    """DL/T 645-1997 function codes (control bits D4..D0)."""

    READ_DATA = 0x01
    READ_FOLLOW_UP = 0x02
    REREAD_DATA = 0x03
    WRITE_DATA = 0x04
    BROADCAST_TIME = 0x08
    WRITE_ADDRESS = 0x0A
    CHANGE_BAUD = 0x0C
    CHANGE_PASSWORD = 0x0F
    DEMAND_RESET = 0x10


_FUNCTIONS_1997: Final = frozenset(int(f) for f in Function1997) - {0x08}


def version_of_function(function: int) -> Dlt645Version:
    """Infer the protocol generation from a function code.

    The 1997 codes (01H-04H, 0AH, 0CH, 0FH, 10H) mean 1997; everything else,
    including the broadcast time set 08H that both generations share, means 2007.

    Args:
        function: the control byte's bits D4..D0.

    Returns:
        The generation the code belongs to.
    """
    return Dlt645Version.V1997 if function in _FUNCTIONS_1997 else Dlt645Version.V2007


@dataclass(frozen=True, slots=True)
class Frame:
    """One DL/T 645 frame, without preamble, checksum and the 0x33 offset.

    Attributes:
        address: the 12 address digits, most significant first (``"000000000161"``).
            Hex letters are kept as they are, so the wildcard is ``"AAAAAAAAAAAA"``.
        control: the control byte C.
        data: the plain DATA field (0x33 already subtracted).
    """

    address: str
    control: int
    data: bytes

    def __post_init__(self) -> None:
        """Check the fields so that every Frame can be encoded.

        Raises:
            FrameFormatError: on an address that is not 12 hex digits, a control byte
                outside 0..255 or more than 255 data bytes.
        """
        if not _ADDRESS_RE.fullmatch(self.address):
            raise FrameFormatError(
                f"address must be 12 hex digits, most significant first; got {self.address!r}"
            )
        if not 0 <= self.control <= 0xFF:
            raise FrameFormatError(f"control byte out of range: {self.control}")
        if len(self.data) > MAX_DATA_LENGTH:
            raise FrameFormatError(
                f"data field is {len(self.data)} bytes; the length byte allows {MAX_DATA_LENGTH}"
            )

    @property
    def is_response(self) -> bool:
        """True for slave-to-master frames (control bit D7)."""
        return bool(self.control & CONTROL_RESPONSE)

    @property
    def direction(self) -> Literal["request", "response"]:
        """``"response"`` when D7 is set, else ``"request"``."""
        return "response" if self.control & CONTROL_RESPONSE else "request"

    @property
    def abnormal(self) -> bool:
        """True for an abnormal (error) reply (control bit D6)."""
        return bool(self.control & CONTROL_ABNORMAL)

    @property
    def follow_up(self) -> bool:
        """True when more frames follow (control bit D5)."""
        return bool(self.control & CONTROL_FOLLOW_UP)

    @property
    def function(self) -> int:
        """The function code, control bits D4..D0."""
        return self.control & CONTROL_FUNCTION_MASK

    @property
    def version(self) -> Dlt645Version:
        """The generation inferred from the function code (see `version_of_function`)."""
        return version_of_function(self.control & CONTROL_FUNCTION_MASK)


def checksum(body: bytes | bytearray | memoryview) -> int:
    """Return the DL/T 645 checksum: the sum of the bytes modulo 256.

    Args:
        body: the frame from the first 68H to the last DATA byte (no preamble).

    Returns:
        The checksum byte.
    """
    return sum(body) & 0xFF


def encode_frame(frame: Frame, *, preamble: int = 4) -> bytes:
    """Serialise a frame for the wire.

    Args:
        frame: the frame to send.
        preamble: how many FEH wake-up bytes to put in front (the standard says 4).

    Returns:
        ``FE.. 68 A0..A5 68 C L DATA+33 CS 16``.

    Raises:
        ValueError: if ``preamble`` is negative.
    """
    if preamble < 0:
        raise ValueError(f"preamble must be >= 0, got {preamble}")
    body = b"".join(
        (
            b"\x68",
            bytes.fromhex(frame.address)[::-1],
            bytes((START_BYTE, frame.control, len(frame.data))),
            frame.data.translate(ADD_33),
        )
    )
    return b"\xfe" * preamble + body + bytes((sum(body) & 0xFF, END_BYTE))


def decode_frame(raw: bytes) -> Frame:
    """Decode a buffer that holds exactly one frame, optionally after FEH preambles.

    Args:
        raw: the bytes, for example one reply read from a port or pasted by a user.

    Returns:
        The decoded frame.

    Raises:
        FrameFormatError: bad start byte, truncated frame, length field that does not
            match the buffer, or missing end byte; the message says which.
        ChecksumError: the checksum does not match.
    """
    start = 0
    size = len(raw)
    while start < size and raw[start] == PREAMBLE_BYTE:
        start += 1
    if start == size:
        raise FrameFormatError("no frame: the buffer is empty or holds only FE preamble bytes")
    if raw[start] != START_BYTE:
        raise FrameFormatError(
            f"bad start byte: expected 0x68 at offset {start}, got 0x{raw[start]:02X}"
        )
    if size - start < _OVERHEAD:
        raise FrameFormatError(
            f"frame truncated: {size - start} bytes after the preamble, a frame has at least 12"
        )
    if raw[start + 7] != START_BYTE:
        raise FrameFormatError(
            f"bad second start byte: expected 0x68 at offset {start + 7}, "
            f"got 0x{raw[start + 7]:02X}"
        )
    length = raw[start + 9]
    total = _OVERHEAD + length
    if size - start != total:
        raise FrameFormatError(
            f"length field L=0x{length:02X} ({length}) means a {total}-byte frame, "
            f"but {size - start} bytes follow the preamble"
        )
    return frame_from_checked_slice(raw, start, length)


def frame_from_checked_slice(raw: bytes | bytearray, start: int, length: int) -> Frame:
    """Validate end byte and checksum of the frame at ``raw[start:]`` and build it.

    The caller has already checked both start bytes and that ``12 + length`` bytes
    are present. Shared by `decode_frame` and the stream buffer.

    Args:
        raw: buffer holding the frame.
        start: offset of the first 68H.
        length: the L field.

    Returns:
        The decoded frame.

    Raises:
        FrameFormatError: the end byte is not 16H.
        ChecksumError: the checksum does not match.
    """
    cs_at = start + _HEADER_LENGTH + length
    end = raw[cs_at + 1]
    if end != END_BYTE:
        raise FrameFormatError(
            f"missing end byte: expected 0x16 at offset {cs_at + 1}, got 0x{end:02X}"
        )
    computed = sum(raw[start:cs_at]) & 0xFF
    received = raw[cs_at]
    if computed != received:
        raise ChecksumError(
            f"checksum mismatch: computed 0x{computed:02X}, frame has 0x{received:02X}",
            expected=computed,
            received=received,
        )
    return unchecked_frame(
        raw[start + 6 : start : -1].hex().upper(),
        raw[start + 8],
        bytes(raw[start + _HEADER_LENGTH : cs_at]).translate(SUB_33),
    )


# A slotted twin of Frame with the same layout and no frozen __setattr__: the decoder
# fills one with plain attribute stores and turns it into a Frame by assigning its
# __class__, which costs less than Frame.__init__ or the slot descriptors' __set__.
# Frame's checks are skipped: fields cut from a checksummed wire frame always pass them.
FrameBuilder: Final[type] = type("FrameBuilder", (), {"__slots__": Frame.__slots__})


def unchecked_frame(address: str, control: int, data: bytes) -> Frame:
    """Build a Frame without re-validating fields that came from a checked wire frame.

    The decoder's hot path: an address made from 6 bytes is always 12 hex digits,
    a byte is always within 0..255 and L never exceeds 255.

    Args:
        address: 12 upper-case hex digits.
        control: the control byte.
        data: the plain data field.

    Returns:
        The frame.
    """
    frame = FrameBuilder()
    frame.address = address
    frame.control = control
    frame.data = data
    frame.__class__ = Frame
    result: Frame = frame
    return result
