"""Serving the API from the service: on its port, from one process or several.

The service opens the API's listening socket itself and, with ``api_processes`` = 1,
serves it with uvicorn in its own event loop. With ``api_processes`` above 1 it starts
that many *API processes* instead and never accepts from the socket: the processes
accept from it, the one with the fewest connections open first
(``amigate.api.fair_accept``), and answer with an app of their own, over database
connections of their own, so billing reads use more than one CPU (one Python process
uses one) and take none from the buses. They are spawned, not forked: the service runs
threads. Serving HTTP only, they run on uvloop's event loop (uvicorn picks it when
installed), which spends less CPU a request than asyncio's.

``/metrics`` and ``/readyz`` in an API process ask the service over a pipe, since
the collection metrics and the bus workers live there. An API process that dies
is started again (after a delay that grows while it keeps failing soon after its
start); one whose service is gone stops within a second; on stop the service asks
each to finish its requests (SIGTERM) and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, MutableSequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url

from amigate.api.app import Readiness
from amigate.api.fair_accept import ABSENT, SharedSocketServer
from amigate.api.rate_buckets import RateTable, SharedRateLimiter
from amigate.config import Settings
from amigate.errors import ConfigError, PortUnavailable, ServiceUnreachable

_LOG = logging.getLogger("amigate.api")
_ASK_TIMEOUT_S = 5.0
_STOP_WAIT_S = 15.0
_RESTART_MIN_S = 1.0
_RESTART_MAX_S = 60.0
_STABLE_S = 60.0  # a process that served this long restarts at once


def bind(host: str, port: int) -> socket.socket:
    """The listening socket of the API on ``host``:``port`` (the API processes, when
    there are several, accept from it too).

    Raises:
        PortUnavailable: the address cannot be bound (in use, or not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on TCP
    # sockets that say so, and with it on, a response written as headers then body
    # waits for the client's delayed ACK (40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PortUnavailable(f"the API cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def until_listening(
    server: uvicorn.Server | None, task: Any, processes: ApiProcesses, stop: asyncio.Event
) -> bool:
    """Wait until the API is served: by ``server`` (run by ``task``) in the service's own
    loop, or by every API process (neither offers an event for it). False when the server
    ended first or ``stop`` was set."""
    while True:
        if server is not None and (server.started or task.done()):
            return bool(server.started)
        if server is None and processes.missing() is None:
            return True
        if stop.is_set():
            return False
        await asyncio.sleep(0.01)


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the API (access log only at DEBUG)."""
    return uvicorn.Config(
        app, log_level=settings.log_level.lower(), access_log=settings.log_level == "DEBUG",
        lifespan="off",
    )  # fmt: skip


class ApiProcesses:
    """The API processes of a service (``api_processes`` above 1), and the answers they
    ask it for."""

    def __init__(
        self, settings: Settings, url: str, *,
        render: Callable[[], bytes], readiness: Readiness,
    ) -> None:  # fmt: skip
        """Prepare ``settings.api_processes`` processes when above 1 (started by
        :meth:`start`); none when the service serves the API itself.

        Args:
            settings: the service's settings (the processes use the same).
            url: the service's database.
            render: the service's metrics in Prometheus text format.
            readiness: the service's readiness.
        """
        self.settings = settings
        self.url = url
        self.render = render
        self.readiness = readiness
        self.count = settings.api_processes if settings.api_processes > 1 else 0
        parsed = make_url(url)
        if self.count and parsed.get_backend_name() == "sqlite" and parsed.database in (
            None, "", ":memory:"
        ):  # fmt: skip
            raise ConfigError("api_processes above 1 needs a database file or server, "
                              "not an in-memory SQLite database")  # fmt: skip
        self.processes: list[BaseProcess] = []
        self._started: list[float] = []  # monotonic start time of each slot's process
        self._delay: list[float] = []  # wait before starting a slot's process again
        self._listening: set[int | None] = set()  # pids
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._rate_table: RateTable | None = None  # the per-key buckets all processes share
        self._listener: socket.socket | None = None
        # Connections each process has open: in shared memory once started.
        self._open: MutableSequence[int] = [ABSENT] * self.count

    def start(self, listener: socket.socket) -> None:
        """Start the processes, accepting from ``listener``, and a thread that starts a
        dead one again."""
        if not self.count:
            return
        self._listener = listener
        self._open = self._context.RawArray("i", [ABSENT] * self.count)
        self._rate_table = RateTable()
        self._started = [time.monotonic()] * self.count
        self._delay = [_RESTART_MIN_S] * self.count
        self.processes = [self._spawn(n) for n in range(self.count)]
        self._watcher = threading.Thread(target=self._watch, name="api processes", daemon=True)
        self._watcher.start()

    def missing(self) -> str | None:
        """What keeps the processes from serving, or None once every one listens."""
        listening = sum(p.pid in self._listening for p in self.processes)
        if listening < self.count:
            return f"API processes starting ({listening} of {self.count} listening)"
        return None

    def stop(self) -> None:
        """Ask every process to finish its requests and end; kill one that does not."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        for p in self.processes:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn finishes the requests in progress
        deadline = time.monotonic() + _STOP_WAIT_S
        for p in self.processes:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                _LOG.error("API process %s did not stop in %.0f s; killing it", p.pid, _STOP_WAIT_S)
                p.kill()
                p.join()
        if self._rate_table is not None:
            self._rate_table.close()
            self._rate_table = None

    def _spawn(self, number: int) -> BaseProcess:
        table, listener = self._rate_table, self._listener
        if table is None or listener is None:
            raise RuntimeError("API processes are spawned by start()")
        ours, theirs = self._context.Pipe()
        self._open[number] = ABSENT  # until it accepts
        process = self._context.Process(
            target=serve_process,
            args=(self.settings, self.url, (listener, self._open, number), theirs, table),
            name=f"amigate-api-{number + 1}", daemon=True,
        )  # fmt: skip
        process.start()
        theirs.close()
        threading.Thread(target=self._answer, args=(ours, process.pid, number),
                         name=f"{process.name} pipe", daemon=True).start()  # fmt: skip
        _LOG.info("API process %d of %d started (pid %s)", number + 1, self.count, process.pid)
        return process

    def _answer(self, pipe: Connection, pid: int | None, number: int) -> None:
        """Answer one process's questions until it goes away."""
        with pipe:
            while True:
                try:
                    question = pipe.recv()
                    if question == "listening":  # news, not a question
                        self._listening.add(pid)
                        continue
                    pipe.send(self.render() if question == "metrics" else self.readiness())
                except (EOFError, OSError):
                    self._listening.discard(pid)
                    self._open[number] = ABSENT  # the others no longer leave it connections
                    return

    def _watch(self) -> None:
        """Start a dead process again: at once if it had served a while, else after a
        delay that doubles up to a minute (a process failing at start is not a busy loop)."""
        while not self._stopping.wait(_RESTART_MIN_S):
            for n, p in enumerate(self.processes):
                if p.is_alive() or self._stopping.is_set():
                    continue
                now = time.monotonic()
                if now - self._started[n] > _STABLE_S:
                    self._delay[n] = _RESTART_MIN_S
                if self._delay[n] > _RESTART_MIN_S and now < self._started[n] + self._delay[n]:
                    continue
                _LOG.error("API process %s exited (code %s); starting another",
                           p.pid, p.exitcode)  # fmt: skip
                self._started[n] = now
                self.processes[n] = self._spawn(n)
                self._delay[n] = min(_RESTART_MAX_S, self._delay[n] * 2)


class ServiceLink:
    """An API process's questions to its service (one at a time, over the pipe)."""

    def __init__(self, pipe: Connection) -> None:
        """Ask over ``pipe``."""
        self._pipe = pipe
        self._lock = threading.Lock()

    def tell(self, news: str) -> None:
        """Tell the service ``news`` (no answer)."""
        with self._lock, contextlib.suppress(OSError):
            self._pipe.send(news)

    def ask(self, question: str) -> Any:
        """The service's answer to ``question``.

        Raises:
            ServiceUnreachable: no answer within 5 s, or the service is gone.
        """
        with self._lock:
            try:
                self._pipe.send(question)
                if self._pipe.poll(_ASK_TIMEOUT_S):
                    return self._pipe.recv()
            except (EOFError, OSError):
                pass
            raise ServiceUnreachable(f"the service did not answer for {question}")

    def render(self) -> bytes:
        """The service's metrics."""
        answer: bytes = self.ask("metrics")
        return answer

    def readiness(self) -> tuple[bool, str]:
        """The service's readiness (not ready when it does not answer)."""
        try:
            ready, missing = self.ask("ready")
        except ServiceUnreachable as exc:
            return False, str(exc)
        return bool(ready), str(missing)


def serve_process(
    settings: Settings, url: str, place: tuple[socket.socket, MutableSequence[int], int],
    pipe: Connection, rate_table: RateTable,
) -> None:
    """An API process: serve the app over database ``url`` until SIGTERM or the service's
    end, counting each key's requests in the ``rate_table`` every API process shares.

    ``place`` is the listening socket it accepts from, the table of the connections each
    API process has open, and this process's slot in it (see ``amigate.api.fair_accept``).
    """
    from amigate.api.app import create_app
    from amigate.api.v1.warm_up import warm
    from amigate.memory import bound_allocator, bound_sqlite, keep_freed, settle_heap
    from amigate.storage.engine import open_readers

    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    listener, table, slot = place
    bound_allocator()
    keep_freed(settings.api_heap_reserve_mb << 20)
    bound_sqlite(settings.sqlite_heap_mb << 20)
    engine = open_readers(url, connections=settings.api_connections,
                          sqlite_cache_kib=settings.sqlite_cache_mb << 10,
                          sqlite_mmap_mib=settings.api_sqlite_mmap_mb)  # fmt: skip
    link = ServiceLink(pipe)
    limiter = SharedRateLimiter(rate_table, settings.api_rate_limit, settings.api_rate_burst)
    app = create_app(settings, engine, metrics=link, readiness=link.readiness, inline_reads=True,
                     rate_limiter=limiter)  # fmt: skip
    warm(app, settings.api_connections)  # before it accepts: see amigate.api.v1.warm_up
    server = SharedSocketServer(uvicorn_config(app, settings), listener, table, slot)
    settle_heap()
    service = os.getppid()
    # The service decides when to stop: SIGTERM from it ends this process gracefully; a
    # Ctrl-C in the terminal reaches the service, which then stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))

    def watch() -> None:
        told = False
        while not server.should_exit:
            if server.started and not told:
                link.tell("listening")
                told = True
            if os.getppid() != service:  # the service was killed: nobody would stop us
                _LOG.warning("the service (pid %d) is gone; stopping", service)
                server.should_exit = True
            time.sleep(0.1 if not told else 1.0)

    threading.Thread(target=watch, name="service watch", daemon=True).start()
    try:
        server.run()
    finally:
        listener.close()
        engine.dispose()
        limiter.close()
        rate_table.close()
