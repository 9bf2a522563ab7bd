"""Incremental DL/T 645 frame decoder: push bytes in, pull frames out, no I/O."""

from __future__ import annotations

from typing import Final

from amigate.codecs.dlt645_frame import (
    END_BYTE,
    MAX_DATA_LENGTH,
    START_BYTE,
    SUB_33,
    Frame,
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

    __slots__ = ("_buf", "_garbage", "max_data_length", "max_garbage")

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
        if not 0 <= max_data_length <= MAX_DATA_LENGTH:
            raise ValueError(f"max_data_length must be within 0..255, got {max_data_length}")
        if max_garbage < 1:
            raise ValueError(f"max_garbage must be >= 1, got {max_garbage}")
        self._buf = bytearray()
        self._garbage = 0
        self.max_data_length = max_data_length
        self.max_garbage = max_garbage

    def __len__(self) -> int:
        """Return the number of bytes held, not yet returned as frames or skipped."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Append received bytes.

        Args:
            data: bytes as they came from the transport, in any chunking.
        """
        self._buf += data

    def clear(self) -> None:
        """Drop everything held, for example before sending a new request."""
        self._buf.clear()
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
        while True:
            start = buf.find(START_BYTE)
            if start:
                if start < 0:
                    self._skip(len(buf))
                    return None
                del buf[:start]  # preamble or noise
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
                    buf[6:0:-1].hex().upper(), buf[8], bytes(buf[_HEADER:cs_at]).translate(SUB_33)
                )
                del buf[:total]
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
        del self._buf[:count]
        self._garbage += count
        if self._garbage > self.max_garbage:
            skipped = self._garbage
            self._garbage = 0
            raise FrameTooLong(
                f"no valid frame in {skipped} bytes (limit {self.max_garbage}); "
                "check baud rate and parity"
            )
