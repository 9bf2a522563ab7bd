"""The ``Transport`` protocol, the stream-backed implementation and exception mapping.

A transport is a byte pipe to a bus (an RS-485 port or a transparent serial server):
it knows nothing about frames. Drivers receive one already opened and never open
ports themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from amigate.errors import (
    AmigateError,
    ConnectionLost,
    ReadTimeout,
    TransportError,
)

ExceptionMap = Mapping[type[BaseException], type[AmigateError]]

#: The translation used by every transport; order matters (most specific first).
DEFAULT_EXCEPTION_MAP: ExceptionMap = {
    TimeoutError: ReadTimeout,
    ConnectionResetError: ConnectionLost,
    BrokenPipeError: ConnectionLost,
    ConnectionAbortedError: ConnectionLost,
    EOFError: ConnectionLost,
    OSError: TransportError,
}


@contextlib.contextmanager
def map_exceptions(mapping: ExceptionMap, *, context: str) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block into amigate errors.

    Errors that already belong to the amigate tree pass through unchanged; an
    exception that matches no entry of ``mapping`` is re-raised as it is.

    Args:
        mapping: foreign exception type to amigate error type, checked in order.
        context: what was being done, prefixed to the message (``"read from tcp://..."``).

    Raises:
        AmigateError: the translated error, chained to the original with ``from``.
    """
    try:
        yield
    except AmigateError:
        raise
    except Exception as exc:
        ours = translate_exception(exc, mapping, context=context)
        if ours is None:
            raise
        raise ours from exc


def translate_exception(
    exc: Exception, mapping: ExceptionMap, *, context: str
) -> AmigateError | None:
    """The amigate error ``mapping`` gives for foreign ``exc`` (None: no entry matches);
    for hot paths that catch themselves instead of entering :func:`map_exceptions`."""
    for foreign, ours in mapping.items():
        if isinstance(exc, foreign):
            return ours(f"{context}: {str(exc) or type(exc).__name__}")
    return None


@runtime_checkable
class Transport(Protocol):
    """An open byte pipe to one bus; one request in flight at a time is the caller's job.

    ``read`` takes its timeout as an argument (rather than leaving it to the caller's
    ``asyncio.timeout``) because running out of time is part of the contract: it
    becomes :class:`ReadTimeout`, with the endpoint in the message.
    """

    @property
    def name(self) -> str:
        """Where the bytes go, for messages (``tcp://10.0.0.5:8899``)."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` and wait until it has been handed to the operating system.

        Raises:
            TransportError: the port or connection failed.
        """
        ...

    async def read(self, max_bytes: int, timeout: float) -> bytes:  # noqa: ASYNC109
        """Return between 1 and ``max_bytes`` bytes, as soon as any are available.

        Raises:
            ReadTimeout: nothing arrived within ``timeout`` seconds.
            ConnectionLost: the peer closed the connection.
            TransportError: the port or connection failed.
        """
        ...

    async def drain_input(self, quiet: float, *, limit: float = 10.0) -> bytes:
        """Discard input until the line has been quiet for ``quiet`` seconds.

        Used after a timeout so that a late answer is never taken for the answer to
        the next request.

        Args:
            quiet: how long the line must stay silent.
            limit: give up waiting for silence after this many seconds.

        Returns:
            The bytes that were discarded.
        """
        ...

    async def aclose(self) -> None:
        """Close the port or connection; closing twice is harmless."""
        ...


class StreamTransport:
    """A transport over an asyncio ``StreamReader``/``StreamWriter`` pair (TCP or serial)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str,
        exception_map: ExceptionMap = DEFAULT_EXCEPTION_MAP,
    ) -> None:
        """Wrap an opened stream pair.

        Args:
            reader: the stream to read from.
            writer: the stream to write to.
            name: a description of the endpoint for error messages.
            exception_map: how foreign errors are translated.
        """
        self._reader = reader
        self._writer = writer
        self._name = name
        self._map = exception_map
        self._closed = False

    @property
    def name(self) -> str:
        """Where the bytes go, for messages."""
        return self._name

    async def write(self, data: bytes) -> None:
        """Send ``data`` (see :meth:`Transport.write`)."""
        if self._closed:
            raise ConnectionLost(f"write to {self._name}: transport is closed")
        with map_exceptions(self._map, context=f"write to {self._name}"):
            self._writer.write(data)
            await self._writer.drain()

    async def read(self, max_bytes: int, timeout: float) -> bytes:  # noqa: ASYNC109
        """Read what is available (see :meth:`Transport.read`)."""
        if self._closed:
            raise ConnectionLost(f"read from {self._name}: transport is closed")
        try:
            with map_exceptions(self._map, context=f"read from {self._name}"):
                async with asyncio.timeout(timeout):
                    data = await self._reader.read(max_bytes)
        except ReadTimeout as exc:
            raise ReadTimeout(f"nothing received from {self._name} in {timeout:.3g} s") from exc
        if not data:
            raise ConnectionLost(f"read from {self._name}: connection closed by the peer")
        return data

    async def drain_input(self, quiet: float, *, limit: float = 10.0) -> bytes:
        """Discard input until the line is quiet (see :meth:`Transport.drain_input`)."""
        return await drain_by_reading(self, quiet, limit=limit)

    async def aclose(self) -> None:
        """Close the stream (see :meth:`Transport.aclose`)."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError, RuntimeError):
            await self._writer.wait_closed()


async def drain_by_reading(transport: Transport, quiet: float, *, limit: float) -> bytes:
    """Read and discard from ``transport`` until ``quiet`` seconds pass without input.

    Args:
        transport: the transport to drain.
        quiet: the silence that ends the wait.
        limit: the longest time to spend here, for a line that never goes quiet.

    Returns:
        The discarded bytes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    discarded = bytearray()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            discarded += await transport.read(4096, min(quiet, remaining))
        except (ReadTimeout, ConnectionLost):
            break
    return bytes(discarded)
