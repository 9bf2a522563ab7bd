"""The in-memory transport used by driver tests."""

from __future__ import annotations

import pytest

from amigate.errors import ConnectionLost, ReadTimeout
from amigate.transports import Late, MockTransport, Transport


async def test_replies_become_readable_after_a_write_and_writes_are_recorded() -> None:
    mock = MockTransport([b"abc", b"def"])
    assert isinstance(mock, Transport)
    with pytest.raises(ReadTimeout):
        await mock.read(10, timeout=1.0)
    await mock.write(b"q1")
    assert await mock.read(2, timeout=1.0) == b"ab"
    assert await mock.read(10, timeout=1.0) == b"c"
    with pytest.raises(ReadTimeout):
        await mock.read(10, timeout=1.0)
    await mock.write(b"q2")
    assert await mock.read(10, timeout=1.0) == b"def"
    assert mock.writes == [b"q1", b"q2"]


async def test_none_means_no_reply_and_callables_see_the_writes() -> None:
    mock = MockTransport([None, lambda written: written[-2:]])
    await mock.write(b"first")
    with pytest.raises(ReadTimeout):
        await mock.read(10, timeout=1.0)
    await mock.write(b"second")
    assert await mock.read(10, timeout=1.0) == b"nd"


async def test_late_replies_are_drained_or_come_before_the_next_answer() -> None:
    drained = MockTransport([Late(b"late"), b"next"])
    await drained.write(b"q")
    with pytest.raises(ReadTimeout):
        await drained.read(10, timeout=1.0)
    assert await drained.drain_input(0.5) == b"late"
    await drained.write(b"q")
    assert await drained.read(10, timeout=1.0) == b"next"

    undrained = MockTransport([Late(b"late"), b"next"])
    await undrained.write(b"q")
    with pytest.raises(ReadTimeout):
        await undrained.read(10, timeout=1.0)
    await undrained.write(b"q")
    assert await undrained.read(10, timeout=1.0) == b"late"


async def test_injected_error_and_close() -> None:
    mock = MockTransport([b"x"], error=OSError("gone"))
    with pytest.raises(OSError, match="gone"):
        await mock.write(b"q")
    mock.error = None
    await mock.aclose()
    with pytest.raises(ConnectionLost):
        await mock.read(1, timeout=1.0)
