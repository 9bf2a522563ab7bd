"""Spreading the API's connections evenly over the API processes.

With ``api_processes`` above 1, the API processes accept from one listening socket
that the service opens and never accepts from itself. Left to the kernel, which
process gets a new connection is chance: on a socket of its own per process
(``SO_REUSEPORT``) the kernel picks one by a hash of the addresses, and on one
shared socket the process that wakes first takes it. Billing systems hold their
keep-alive connections for hours, so chance stays: 8 connections fell 5 / 3 or
6 / 2 over 2 processes, and the clients of the busier one waited about twice as
long as the others for every request.

So each process publishes how many connections it has open (accepted, and not yet
seen closed) in a table all of them map, and accepts only while no other has fewer;
the others stop watching the socket and look again every tick (10 ms) until they
watch it again (a process watching it wakes only for a connection). A process
busy with a long request (a batch of determinants takes a second or two) would then
keep a new client waiting, so a process that finds a connection waiting for 25
ticks in a row takes it anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
from collections.abc import Callable, Iterator, MutableSequence
from typing import Any

import uvicorn

_LOG = logging.getLogger("amigate.api")
_TICK_S = 0.01
#: Ticks a waiting connection is left to a process with fewer: longer than it takes to
#: answer most requests, even the first ones of a process (its database connections
#: opened, its caches cold), which otherwise decide how the clients connecting at once
#: are spread; a batch takes seconds.
_PATIENCE_TICKS = 25
_BACKOFF_S = 1.0  # after accept failed (out of file descriptors, say)
#: What a slot of the table holds while its process is not accepting (not started yet,
#: stopped or dead): more than any process has open, so the others do not wait for it.
ABSENT = 2**31 - 1


class FairAcceptor:
    """Accepts connections from ``listener`` for one API process (slot ``slot`` of
    ``table``) and hands each to ``serve``, while no other process has fewer open."""

    def __init__(
        self, listener: socket.socket, table: MutableSequence[int], slot: int,
        serve: Callable[[socket.socket], None],
    ) -> None:  # fmt: skip
        """Args:
        listener: the listening socket every API process shares.
        table: open connections per API process (shared memory).
        slot: this process's place in ``table``.
        serve: starts serving an accepted connection (in the running loop), and calls
            :meth:`closed` once it is closed.
        """
        self._listener = listener
        self._table = table
        self._slot = slot
        self._serve = serve
        self.open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching = False
        self._paused = False  # after accept failed: until the next tick
        self._waited = 0  # ticks a connection was seen waiting while others had fewer
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin accepting in ``loop``."""
        self._listener.setblocking(False)
        self._loop = loop
        self._table[self._slot] = self.open
        self._tick()

    def stop(self) -> None:
        """Accept nothing more (connections already taken stay served)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watch(False)
        self._table[self._slot] = ABSENT
        self._loop = None

    def closed(self) -> None:
        """One of this process's connections is closed."""
        self.open -= 1
        if self._loop is not None:
            self._table[self._slot] = self.open

    def fewest(self) -> bool:
        """Whether no other process has fewer connections open than this one."""
        mine = self._table[self._slot]
        return all(mine <= other for other in self._table)

    def _tick(self) -> None:
        self._timer = None
        self._paused = False
        if self.fewest():
            self._waited = 0
            self._watch(True)
            return
        if not self._waiting():
            self._waited = 0
        else:
            self._waited += 1
            if self._waited >= _PATIENCE_TICKS:  # the process with fewer is busy
                self._waited = 0
                self._accept(1)
        self._ticking()

    def _ticking(self) -> None:
        """Tick again soon, unless a tick (or the end of a pause) is due already."""
        if self._loop is not None and self._timer is None:
            self._timer = self._loop.call_later(_TICK_S, self._tick)

    def _watch(self, on: bool) -> None:
        on = on and not self._paused
        if on == self._watching or self._loop is None:
            return
        if on:
            self._loop.add_reader(self._listener, self._readable)
        else:
            self._loop.remove_reader(self._listener)
        self._watching = on

    def _waiting(self) -> bool:
        """Whether a connection waits to be accepted."""
        readable, _, _ = select.select([self._listener], [], [], 0)
        return bool(readable)

    def _readable(self) -> None:
        self._accept(None)
        if not self.fewest():
            self._watch(False)
            self._ticking()

    def _accept(self, most: int | None) -> None:
        """Accept while this process has the fewest open, or ``most`` connections."""
        taken = 0
        while not self._paused and ((taken < most) if most is not None else self.fewest()):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _LOG.warning("the API could not accept a connection (%s); trying again in "
                             "%.0f s", exc, _BACKOFF_S)  # fmt: skip
                self._pause()
                return
            taken += 1
            self.open += 1
            self._table[self._slot] = self.open
            if conn.family != socket.AF_UNIX:  # not inherited everywhere: set it (bind())
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(conn)

    def _pause(self) -> None:
        """Stop accepting for a while (the tick starts again after it)."""
        self._paused = True
        self._watch(False)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None:
            self._timer = self._loop.call_later(_BACKOFF_S, self._tick)


class UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[Any]:
        """Leave the signal handlers as they are."""
        yield


class SharedSocketServer(UvicornServer):
    """uvicorn serving the connections a :class:`FairAcceptor` takes from the listening
    socket all API processes share."""

    def __init__(
        self, config: uvicorn.Config, listener: socket.socket, table: MutableSequence[int],
        slot: int,
    ) -> None:  # fmt: skip
        """Serve ``app`` of ``config`` on connections from ``listener``, as process ``slot``
        of ``table``."""
        super().__init__(config)
        self.acceptor = FairAcceptor(listener, table, slot, self._take)
        self._adopting: set[asyncio.Task[None]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the app, then accept."""
        await super().startup(sockets=[])
        self.acceptor.start(asyncio.get_running_loop())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Accept nothing more, then finish the requests in progress."""
        self.acceptor.stop()
        await super().shutdown(sockets=None)

    def _take(self, conn: socket.socket) -> None:
        task = asyncio.get_running_loop().create_task(self._adopt(conn))
        self._adopting.add(task)  # a task nothing refers to may be collected
        task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        config = self.config
        factory: Any = config.http_protocol_class  # takes uvicorn's own arguments

        def protocol() -> asyncio.Protocol:
            inner = factory(config=config, server_state=self.server_state,
                            app_state=self.lifespan.state)  # fmt: skip
            return _Counted(inner, self.acceptor.closed)

        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, conn)
        except OSError as exc:  # the client went away meanwhile
            _LOG.debug("an accepted connection closed before it was served: %s", exc)
            conn.close()
            self.acceptor.closed()


class _Counted(asyncio.Protocol):
    """uvicorn's protocol of one connection, telling ``closed`` when the connection is."""

    def __init__(self, inner: asyncio.Protocol, closed: Callable[[], None]) -> None:
        self._inner = inner
        self._closed = closed
        self.data_received = inner.data_received  # type: ignore[method-assign]  # the hot one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._closed()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
