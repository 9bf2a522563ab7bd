"""Bounded reads run in the event loop on SQLite and in a worker thread on PostgreSQL;
batches take turns on SQLite."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import Request

from amigate.api.v1.reads import batch_read, bounded_read


def _request(dialect: str) -> Request:
    engine = SimpleNamespace(dialect=SimpleNamespace(name=dialect))
    return cast(Request, SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine))))


@pytest.mark.parametrize(("dialect", "in_loop"), [("sqlite", True), ("postgresql", False)])
def test_where_the_work_runs(dialect: str, in_loop: bool) -> None:
    def work(x: int, *, y: int) -> tuple[int, int]:
        return threading.get_ident(), x + y

    async def main() -> tuple[Any, int]:
        ran_in, result = await bounded_read(_request(dialect), work, 2, y=3)
        return ran_in == threading.get_ident(), result

    assert asyncio.run(main()) == (in_loop, 5)


def test_errors_reach_the_caller_from_either_place() -> None:
    def fail() -> None:
        raise LookupError("gone")

    for dialect in ("sqlite", "postgresql"):
        with pytest.raises(LookupError, match="gone"):
            asyncio.run(bounded_read(_request(dialect), fail))


@pytest.mark.parametrize(("dialect", "overlap"), [("sqlite", False), ("postgresql", True)])
def test_batches_take_turns_on_sqlite(dialect: str, overlap: bool) -> None:
    spans: list[tuple[float, float]] = []

    def work() -> None:
        started = time.monotonic()
        time.sleep(0.2)
        spans.append((started, time.monotonic()))

    async def main() -> None:
        request = _request(dialect)
        await asyncio.gather(*(batch_read(request, work) for _ in range(3)))

    asyncio.run(main())
    spans.sort()
    overlapping = any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert len(spans) == 3 and overlapping == overlap
