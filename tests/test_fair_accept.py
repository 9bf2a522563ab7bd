"""One API process's acceptor on a real listening socket and event loop; the other
processes are a slot of the table this test sets (the processes themselves:
tests/test_api_processes.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import time

import pytest

from amigate.api.fair_accept import _PATIENCE_TICKS, _TICK_S, ABSENT, FairAcceptor
from amigate.api.processes import bind


async def _accepted(taken: list[tuple[float, socket.socket]], count: int, within: float) -> bool:
    """Whether ``taken`` holds ``count`` connections within ``within`` seconds."""
    deadline = time.monotonic() + within
    while len(taken) < count:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def test_a_process_accepts_while_no_other_has_fewer_and_takes_a_waiting_one_in_the_end() -> None:
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    table = [ABSENT, 0]  # slot 1: another process, with no connection open
    taken: list[tuple[float, socket.socket]] = []
    acceptor = FairAcceptor(listener, table, 0, lambda conn: taken.append((time.monotonic(), conn)))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        acceptor.start(loop)
        assert table == [0, 0]
        clients = [socket.create_connection(("127.0.0.1", port))]
        assert await _accepted(taken, 1, 1.0)  # as few as the other: its to take
        assert table == [1, 0] and acceptor.open == 1
        assert taken[0][1].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

        # Now the other has fewer: a new connection is left to it for a while...
        clients.append(socket.create_connection(("127.0.0.1", port)))
        connected = time.monotonic()
        assert not await _accepted(taken, 2, _PATIENCE_TICKS * _TICK_S / 2)
        # ... and taken once it has waited the patience out (the other is busy).
        assert await _accepted(taken, 2, 2.0)
        assert taken[1][0] - connected >= _PATIENCE_TICKS * _TICK_S * 0.9
        assert table == [2, 0]

        table[1] = 5  # the other has more: taken at once
        clients.append(socket.create_connection(("127.0.0.1", port)))
        assert await _accepted(taken, 3, _PATIENCE_TICKS * _TICK_S / 2)
        assert table == [3, 5]

        for _ in range(3):  # closed: the count falls, and new ones are taken at once again
            acceptor.closed()
        table[1] = 0
        clients.append(socket.create_connection(("127.0.0.1", port)))
        assert await _accepted(taken, 4, _PATIENCE_TICKS * _TICK_S / 2)
        assert table == [1, 0]

        acceptor.stop()  # the others no longer wait for it, and it accepts nothing more
        assert table == [ABSENT, 0]
        clients.append(socket.create_connection(("127.0.0.1", port)))
        assert not await _accepted(taken, 5, _PATIENCE_TICKS * _TICK_S * 2)
        for sock in clients + [conn for _, conn in taken]:
            sock.close()

    try:
        asyncio.run(main())
    finally:
        listener.close()


def test_a_process_out_of_file_descriptors_says_so_and_tries_again_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """accept failing (no file descriptor left) is logged and retried after a pause, not
    every tick; the connection is taken once descriptors are free again."""
    listener = bind("127.0.0.1", 0)
    table = [ABSENT]
    taken: list[tuple[float, socket.socket]] = []
    acceptor = FairAcceptor(listener, table, 0, lambda conn: taken.append((time.monotonic(), conn)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main() -> None:
        acceptor.start(asyncio.get_running_loop())
        client = socket.socket()
        lowest = os.dup(0)  # the lowest free descriptor: the next one accept would get
        os.close(lowest)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
        try:
            client.connect(listener.getsockname())
            await asyncio.sleep(0.5)
            assert not taken
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        failures = [r for r in caplog.records if "could not accept a connection" in r.message]
        assert len(failures) == 1, failures  # paused, not retried every tick
        assert "Too many open files" in failures[0].message
        assert await _accepted(taken, 1, 2.0)  # after the pause
        acceptor.stop()
        client.close()
        taken[0][1].close()

    try:
        with caplog.at_level(logging.WARNING, "amigate.api"):
            asyncio.run(main())
    finally:
        listener.close()
