"""Serve a virtual bus on a TCP port (a transparent serial server) or a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from amigate.simulators.bus import VirtualBus
from amigate.simulators.dlt645_meter import Reply

_LOG = logging.getLogger(__name__)
Writer = Callable[[bytes], Awaitable[None]]


class ManualClock:
    """A simulated clock that only moves when told to: tests run days in milliseconds."""

    def __init__(self, start: datetime | None = None) -> None:
        """Start at ``start`` (UTC-aware; default: now)."""
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        """Return the simulated time."""
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move forward by ``seconds`` (and/or ``days=``, ``hours=``, ``minutes=``)."""
        self.now += timedelta(seconds=seconds, **delta)
        return self.now


class BusLink:
    """One connection between a master and a virtual bus.

    Replies wait for the meter's delay and, with wire-time emulation, trickle out
    at the line speed; they go out from background tasks, so a late reply really
    arrives late, while the master may already be sending its next request.
    """

    def __init__(self, bus: VirtualBus, write: Writer) -> None:
        """Link ``bus`` to a byte sink."""
        self.bus = bus
        self._write = write
        self._line = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def received(self, data: bytes) -> None:
        """Handle bytes from the master."""
        for reply in self.bus.receive(data):
            task = asyncio.create_task(self._send(reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, reply: Reply) -> None:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        async with self._line:  # one talker at a time on a half-duplex line
            if not self.bus.wire_time:
                await self._write(reply.data)
                return
            step = max(1, int(0.01 / self.bus.byte_time))  # about 10 ms of bytes per write
            for i in range(0, len(reply.data), step):
                chunk = reply.data[i : i + step]
                await self._write(chunk)
                await asyncio.sleep(len(chunk) * self.bus.byte_time)

    async def aclose(self) -> None:
        """Cancel replies not sent yet."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


async def serve_tcp(bus: VirtualBus, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Serve ``bus`` on a TCP port, like a transparent serial server.

    Each connection is a master on the same bus (meters and their state are shared).

    Args:
        bus: the virtual bus.
        host: the address to listen on.
        port: the port; 0 picks a free one (read it from ``server.sockets``).

    Returns:
        The started server.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        link = BusLink(bus, write)
        try:
            while data := await reader.read(4096):
                link.received(data)
        except (ConnectionError, OSError) as exc:
            _LOG.debug("bus %s: connection ended: %s", bus.name, exc)
        except asyncio.CancelledError:
            # Server shutdown: a top-level connection task; end it quietly instead of
            # letting asyncio log the cancellation as an error.
            pass
        await link.aclose()
        writer.close()
        with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
            await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)


class PtyServer:
    """Serve a bus on a pseudo-terminal; masters open :attr:`path` as a serial port."""

    def __init__(self, bus: VirtualBus) -> None:
        """Create the pty pair (both ends raw) without serving yet."""
        self.bus = bus
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # a cooked tty would eat or translate meter bytes
        tty.setraw(self._master)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._link = BusLink(bus, self._write)
        self._started = False

    async def start(self) -> None:
        """Start answering what masters write to :attr:`path`."""
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        self._started = True

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO while no master has the slave open
            _LOG.debug("pty %s: %s", self.path, exc)
            return
        if data:
            self._link.received(data)

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                continue
            view = view[written:]

    async def aclose(self) -> None:
        """Stop serving and close the pty."""
        if self._started:
            asyncio.get_running_loop().remove_reader(self._master)
            self._started = False
        await self._link.aclose()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
