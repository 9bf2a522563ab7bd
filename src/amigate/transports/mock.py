"""An in-memory transport that plays back scripted bytes and records what was written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from amigate.errors import ConnectionLost, ReadTimeout


class Late(bytes):
    """A scripted reply that arrives only after the reader has given up waiting.

    The read that meets it times out; the bytes then arrive during
    :meth:`MockTransport.drain_input` (and are discarded), or, if the driver does
    not drain, in front of the answer to its next request.
    """


#: A scripted reply: bytes, or a function of everything written so far returning bytes.
Chunk = bytes | Callable[[bytes], bytes]


class MockTransport:
    """A fake bus for driver tests, shipped with the package.

    Each scripted chunk becomes readable only after the driver has written
    something since the previous chunk was consumed, the way a meter answers only
    once it has been asked. ``None`` in the script stands for a request that gets
    no answer: the driver's read times out (immediately, without sleeping).

    Attributes:
        writes: every ``write`` call's bytes, in order.
    """

    def __init__(
        self,
        chunks: Iterable[Chunk | None] = (),
        *,
        name: str = "mock://",
        need_write: bool = True,
        error: BaseException | None = None,
    ) -> None:
        """Script the transport.

        Args:
            chunks: the replies, in order; ``None`` means "no reply to this request".
            name: the name used in error messages.
            need_write: if false, chunks are readable without a prior write.
            error: raised from every ``read`` and ``write`` once set (fault injection).
        """
        self._chunks: list[Chunk | None] = list(chunks)
        self._pending = bytearray()
        self._late = bytearray()
        self._name = name
        self._need_write = need_write
        self._armed = not need_write
        self.error = error
        self.writes: list[bytes] = []
        self.closed = False

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def written(self) -> bytes:
        """Everything written so far, concatenated."""
        return b"".join(self.writes)

    def feed(self, data: bytes) -> None:
        """Make ``data`` readable now, regardless of the script."""
        self._pending += data

    async def write(self, data: bytes) -> None:
        """Record ``data`` and arm the next scripted reply."""
        await asyncio.sleep(0)
        self._check()
        self.writes.append(bytes(data))
        self._armed = True

    async def read(self, max_bytes: int, timeout: float) -> bytes:  # noqa: ASYNC109
        """Return scripted bytes, or raise ``ReadTimeout`` when the script has none."""
        await asyncio.sleep(0)
        self._check()
        if self._late:
            self._pending[:0] = self._late
            self._late.clear()
        if not self._pending and self._armed and self._chunks:
            chunk = self._chunks.pop(0)
            self._armed = not self._need_write
            if isinstance(chunk, Late):
                self._late += chunk
            elif chunk is not None:
                self._pending += chunk(self.written) if callable(chunk) else chunk
        if not self._pending:
            raise ReadTimeout(f"nothing received from {self._name} in {timeout:.3g} s")
        data = bytes(self._pending[:max_bytes])
        del self._pending[:max_bytes]
        return data

    async def drain_input(self, quiet: float, *, limit: float = 10.0) -> bytes:
        """Discard what is readable now and late replies; later scripted replies stay queued."""
        await asyncio.sleep(0)
        discarded = bytes(self._late + self._pending)
        self._late.clear()
        self._pending.clear()
        return discarded

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise ConnectionLost(f"{self._name}: transport is closed")
