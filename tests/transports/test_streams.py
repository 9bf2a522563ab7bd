"""Stream transports over a real pseudo-terminal and loopback TCP, and error mapping."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import tty
from collections.abc import AsyncIterator, Iterator

import pytest

from amigate.errors import (
    ConfigError,
    ConnectionLost,
    PortUnavailable,
    ReadTimeout,
    TransportError,
)
from amigate.transports import StreamTransport, Transport, map_exceptions, open_transport
from amigate.transports.base import DEFAULT_EXCEPTION_MAP

pytestmark = pytest.mark.integration

# Bytes a cooked tty would mangle (CR, XON, SYN, XOFF, DEL) plus the DL/T 645 markers.
AWKWARD = bytes([0x68, 0x0D, 0x11, 0x16, 0x13, 0x7F, 0x0A, 0xFE, 0x03, 0x04, 0x1A])


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(slave)
        os.close(master)


def _read_exactly(fd: int, size: int, timeout: float = 2.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < size and time.monotonic() < deadline:
        data += os.read(fd, size - len(data))
    return data


async def test_serial_transport_over_a_pty_passes_every_byte_unchanged(
    pty_pair: tuple[int, str],
) -> None:
    master, path = pty_pair
    transport = await open_transport(f"serial://{path}?baud=2400&parity=E")
    try:
        await transport.write(AWKWARD)
        echoed = await asyncio.to_thread(_read_exactly, master, len(AWKWARD))
        assert echoed == AWKWARD
        os.write(master, AWKWARD[::-1])
        received = b""
        while len(received) < len(AWKWARD):
            received += await transport.read(64, timeout=2.0)
        assert received == AWKWARD[::-1]
    finally:
        await transport.aclose()


async def test_serial_read_times_out_with_read_timeout(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    transport = await open_transport(f"serial://{path}")
    try:
        started = time.monotonic()
        with pytest.raises(ReadTimeout, match="nothing received from serial://"):
            await transport.read(10, timeout=0.1)
        assert 0.09 <= time.monotonic() - started < 1.0
    finally:
        await transport.aclose()


async def test_drain_input_discards_until_quiet(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    transport = await open_transport(f"serial://{path}")
    try:
        os.write(master, b"late reply")
        discarded = await transport.drain_input(0.1)
        assert discarded == b"late reply"
        with pytest.raises(ReadTimeout):
            await transport.read(10, timeout=0.05)
    finally:
        await transport.aclose()


async def test_opening_a_missing_serial_port_raises_port_unavailable(tmp_path: object) -> None:
    with pytest.raises(PortUnavailable, match="open serial:///dev/amigate-no-such-port"):
        await open_transport("serial:///dev/amigate-no-such-port")


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            received.append(data)
            if data == b"bye":
                break
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"tcp://127.0.0.1:{port}", received


async def test_tcp_transport_round_trip(echo_server: tuple[str, list[bytes]]) -> None:
    url, received = echo_server
    transport = await open_transport(url)
    assert isinstance(transport, Transport)
    assert transport.name == url
    try:
        await transport.write(b"hello")
        assert await transport.read(100, timeout=2.0) == b"HELLO"
        assert received == [b"hello"]
    finally:
        await transport.aclose()
        await transport.aclose()  # closing twice is harmless


async def test_tcp_peer_close_raises_connection_lost(echo_server: tuple[str, list[bytes]]) -> None:
    url, _ = echo_server
    transport = await open_transport(url)
    try:
        await transport.write(b"bye")
        with pytest.raises(ConnectionLost, match="closed by the peer"):
            await transport.read(100, timeout=2.0)
    finally:
        await transport.aclose()


async def test_tcp_connection_refused_raises_port_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(PortUnavailable, match=f"connect to tcp://127.0.0.1:{port}"):
            await open_transport(f"tcp://127.0.0.1:{port}")


async def test_open_transport_rejects_a_bad_url() -> None:
    with pytest.raises(ConfigError):
        await open_transport("udp://127.0.0.1:1")


class _FailingWriter:
    """A stream writer whose underlying file descriptor has gone away."""

    def write(self, data: bytes) -> None:
        raise OSError(5, "Input/output error")

    async def drain(self) -> None:  # pragma: no cover - write fails first
        return None

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


async def test_an_oserror_from_the_stream_surfaces_as_transport_error() -> None:
    reader = asyncio.StreamReader()
    reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
    transport = StreamTransport(reader, _FailingWriter(), name="tcp://gw:1")  # type: ignore[arg-type]
    with pytest.raises(TransportError, match=r"write to tcp://gw:1: .*Input/output error") as info:
        await transport.write(b"x")
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(ConnectionLost, match="read from tcp://gw:1") as lost:
        await transport.read(10, timeout=1.0)
    assert isinstance(lost.value.__cause__, ConnectionResetError)


def test_map_exceptions_passes_unknown_and_amigate_errors_through() -> None:
    with pytest.raises(ValueError), map_exceptions(DEFAULT_EXCEPTION_MAP, context="x"):
        raise ValueError("not ours to translate")
    with (
        pytest.raises(ReadTimeout, match=r"^original$"),
        map_exceptions(DEFAULT_EXCEPTION_MAP, context="x"),
    ):
        raise ReadTimeout("original")


def test_map_exceptions_prefers_the_first_matching_entry() -> None:
    with (
        pytest.raises(ReadTimeout, match="poll: timed out"),
        map_exceptions(DEFAULT_EXCEPTION_MAP, context="poll"),
    ):
        raise TimeoutError("timed out")  # a subclass of OSError too


def test_is_pseudo_terminal(pty_pair: tuple[int, str]) -> None:
    from amigate.transports.serial import is_pseudo_terminal

    assert is_pseudo_terminal(pty_pair[1])
    assert not is_pseudo_terminal("/dev/null")
    assert not is_pseudo_terminal("/dev/amigate-missing")


async def test_a_pty_can_be_opened_again_after_closing(pty_pair: tuple[int, str]) -> None:
    for _ in range(2):
        transport = await open_transport(f"serial://{pty_pair[1]}?parity=E")
        await transport.aclose()
