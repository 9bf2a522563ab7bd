"""Incremental DL/T 645 frame decoder: push bytes in, pull frames out, no I/O."""

from __future__ import annotations

from typing import Final
from zlib import adler32

from amigate.codecs.dlt645_frame import (
    END_BYTE,
    MAX_DATA_LENGTH,
    START_BYTE,
    SUB_33,
    Frame,
    FrameBuilder,
    frame_from_checked_slice,
    unchecked_frame,
)
from amigate.errors import FrameTooLong

__all__ = ["DEFAULT_MAX_DATA_LENGTH", "DEFAULT_MAX_GARBAGE", "Dlt645Buffer"]

#: DL/T 645 limits a reply's DATA field to 200 bytes (writes to 50).
DEFAULT_MAX_DATA_LENGTH: Final = 200
#: Bytes without a frame start tolerated before reporting the line as garbage.
DEFAULT_MAX_GARBAGE: Final = 1024

_HEADER: Final = 10
_OVERHEAD: Final = 12
#: Longest L whose checksummed span (68H to the last DATA byte, L + 10 bytes) has a byte
#: sum below the Adler-32 modulus 65521, so that the low half of adler32() is exactly
#: 1 + the sum: 256 bytes of at most FFH sum to 65280. Longer frames take the slow path.
_FAST_MAX_LENGTH: Final = 246


class Dlt645Buffer:
    """Collects bytes from a serial line or socket and cuts them into frames.

    Feed whatever arrived with `feed`, then call `next_frame` until it returns
    ``None`` (more data needed). The end of a frame is decided by the length
    field, never by the first 16H, because CS, address and data may all contain
    16H or 68H.

    Preambles (FEH) and noise before a frame are skipped silently. A candidate
    frame (``68 xx xx xx xx xx xx 68 C L``) whose end byte or checksum is wrong
    makes `next_frame` raise; its first byte has then been dropped, so the next
    call resynchronises on the following 68H. Nothing is lost but the bad start.
    An incomplete candidate is abandoned as noise when a complete, valid frame
    already sits behind it.

    Example:
        >>> buf = Dlt645Buffer()
        >>> buf.feed(bytes.fromhex("FEFE68610100000000681104333334331416"))
        >>> buf.next_frame().address
        '000000000161'
    """

    __slots__ = ("_buf", "_fast_max_length", "_garbage", "_max_data_length", "max_garbage")

    def __init__(
        self,
        *,
        max_data_length: int = DEFAULT_MAX_DATA_LENGTH,
        max_garbage: int = DEFAULT_MAX_GARBAGE,
    ) -> None:
        """Create an empty buffer.

        Args:
            max_data_length: largest L accepted; a larger length field raises
                `FrameTooLong` (at most 255, the limit of the length byte).
            max_garbage: how many bytes may be skipped without finding a frame before
                `FrameTooLong` is raised (a sign of a baud-rate or parity mismatch).

        Raises:
            ValueError: on limits out of range.
        """
        self.max_data_length = max_data_length  # checked by the property
        if max_garbage < 1:
            raise ValueError(f"max_garbage must be >= 1, got {max_garbage}")
        # Immutable bytes: the usual reply arrives whole into an empty buffer, where
        # b"" + data is data itself, and slicing bytes is cheaper than bytearray copies.
        self._buf = b""
        self._garbage = 0
        self.max_garbage = max_garbage

    @property
    def max_data_length(self) -> int:
        """Largest L accepted; a larger length field raises `FrameTooLong`."""
        return self._max_data_length

    @max_data_length.setter
    def max_data_length(self, value: int) -> None:
        if not 0 <= value <= MAX_DATA_LENGTH:
            raise ValueError(f"max_data_length must be within 0..255, got {value}")
        self._max_data_length = value
        # One comparison on the fast path: within the cap and the checksum trick's range.
        self._fast_max_length = min(value, _FAST_MAX_LENGTH)

    def __len__(self) -> int:
        """Return the number of bytes held, not yet returned as frames or skipped."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes.

        Args:
            data: bytes as they came from the transport, in any chunking.
        """
        self._buf += data

    def clear(self) -> None:
        """Drop everything held, for example before sending a new request."""
        self._buf = b""
        self._garbage = 0

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, or ``None`` when more data is needed.

        Returns:
            The next frame, or ``None``.

        Raises:
            FrameTooLong: a length field above ``max_data_length``, or more than
                ``max_garbage`` bytes skipped without a frame.
            FrameFormatError: a candidate frame without its 16H end byte.
            ChecksumError: a candidate frame whose checksum does not match.
        """
        buf = self._buf
        # Fast path: a complete, valid frame at the first 68H (preamble skipped). An
        # IndexError means too few bytes for the candidate: the slow path decides.
        start = buf.find(0x68)
        try:
            if start >= 0 and buf[start + 7] == 0x68:
                length = buf[start + 9]
                cs_at = start + _HEADER + length
                if (
                    buf[cs_at + 1] == 0x16
                    and length <= self._fast_max_length
                    and (adler32(buf[start:cs_at]) - 1) & 0xFF == buf[cs_at]
                    and (not start or self._garbage + start <= self.max_garbage)
                ):
                    # Inlined unchecked_frame: fill the twin, then make it a Frame.
                    frame = FrameBuilder()
                    address = buf[start + 6 : start : -1].hex()
                    # Meter addresses are decimal digits; upper() only for hex letters.
                    frame.address = address if address.isdigit() else address.upper()
                    frame.control = buf[start + 8]
                    frame.data = buf[start + _HEADER : cs_at].translate(SUB_33)
                    frame.__class__ = Frame
                    self._buf = buf[cs_at + 2 :] if len(buf) > cs_at + 2 else b""
                    self._garbage = 0
                    result: Frame = frame
                    return result
        except IndexError:
            pass
        return self._next_frame_slow()

    def _next_frame_slow(self) -> Frame | None:
        """`next_frame` for everything but a valid frame at the first 68H."""
        while True:
            buf = self._buf
            start = buf.find(START_BYTE)
            if start:
                if start < 0:
                    self._skip(len(buf))
                    return None
                self._buf = buf = buf[start:]  # drop preamble or noise
                self._garbage += start
                if self._garbage > self.max_garbage:
                    self._skip(0, force=True)
            size = len(buf)
            if size < _HEADER:
                return None
            if buf[7] != START_BYTE:
                self._skip(1)
                continue
            length = buf[9]
            if length > self.max_data_length:
                self._skip(1)
                raise FrameTooLong(
                    f"length field L={length} exceeds the cap of {self.max_data_length} bytes"
                )
            total = _OVERHEAD + length
            if size < total:
                later = self._complete_frame_after_start()
                if later < 0:
                    return None
                self._skip(later)  # the incomplete candidate was noise
                continue
            cs_at = total - 2
            if buf[total - 1] == END_BYTE and sum(buf[:cs_at]) & 0xFF == buf[cs_at]:
                frame = unchecked_frame(
                    buf[6:0:-1].hex().upper(), buf[8], buf[_HEADER:cs_at].translate(SUB_33)
                )
                self._buf = buf[total:]
                self._garbage = 0
                return frame
            try:  # raises the precise error
                frame_from_checked_slice(buf, 0, length)
            finally:
                self._skip(1)

    def _complete_frame_after_start(self) -> int:
        """Find a complete, valid frame behind the incomplete candidate at offset 0.

        Noise can look like a header whose length field points past the data
        received so far; without this look-ahead, a real reply behind it would
        wait for bytes that never come.

        Returns:
            The offset of the first such frame, or -1.
        """
        buf = self._buf
        size = len(buf)
        pos = buf.find(START_BYTE, 1)
        while 0 < pos <= size - _OVERHEAD:
            if buf[pos + 7] == START_BYTE:
                length = buf[pos + 9]
                end = pos + _OVERHEAD + length
                if (
                    length <= self.max_data_length
                    and end <= size
                    and buf[end - 1] == END_BYTE
                    and sum(buf[pos : end - 2]) & 0xFF == buf[end - 2]
                ):
                    return pos
            pos = buf.find(START_BYTE, pos + 1)
        return -1

    def _skip(self, count: int, *, force: bool = False) -> None:
        """Drop ``count`` leading bytes that are not part of a frame.

        Raises:
            FrameTooLong: once more than ``max_garbage`` bytes were skipped in a row.
        """
        if not count and not force:
            return
        self._buf = self._buf[count:]
        self._garbage += count
        if self._garbage > self.max_garbage:
            skipped = self._garbage
            self._garbage = 0
            raise FrameTooLong(
                f"no valid frame in {skipped} bytes (limit {self.max_garbage}); "
                "check baud rate and parity"
            )
