"""Bounded reads run in the event loop of an app that reads inline (an API process on
SQLite), else in a worker thread; batches take turns on SQLite."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import Request
from sqlalchemy import Engine

from amigate.api.v1.reads import batch_read, bounded_read
from tests.api.conftest import JAN1, Q, add_meter, add_series, make_api


def _request(dialect: str, *, inline: bool = False) -> Request:
    engine = SimpleNamespace(dialect=SimpleNamespace(name=dialect))
    state = SimpleNamespace(engine=engine, inline_reads=inline)
    return cast(Request, SimpleNamespace(app=SimpleNamespace(state=state)))


@pytest.mark.parametrize("in_loop", [True, False])
def test_where_the_work_runs(in_loop: bool) -> None:
    def work(x: int, *, y: int) -> tuple[int, int]:
        return threading.get_ident(), x + y

    async def main() -> tuple[Any, int]:
        ran_in, result = await bounded_read(_request("sqlite", inline=in_loop), work, 2, y=3)
        return ran_in == threading.get_ident(), result

    assert asyncio.run(main()) == (in_loop, 5)


def test_errors_reach_the_caller_from_either_place() -> None:
    def fail() -> None:
        raise LookupError("gone")

    for inline in (True, False):
        with pytest.raises(LookupError, match="gone"):
            asyncio.run(bounded_read(_request("sqlite", inline=inline), fail))


@pytest.mark.parametrize("inline", [True, False])
def test_only_sqlite_reads_inline(engine: Engine, inline: bool) -> None:
    """An app reads inline when asked to and on SQLite only; either way it answers the
    same documents."""
    answers = []
    for reads_inline in (inline, not inline):
        for api in make_api(engine, inline_reads=reads_inline):
            if not answers:
                meter = add_meter(api.store)
                add_series(api.store, meter, JAN1, [Decimal("0.25")] * 8)
            assert api.app.state.inline_reads == (reads_inline and engine.dialect.name == "sqlite")
            period = {"start": JAN1.isoformat(), "end": (JAN1 + 8 * Q).isoformat()}
            answers.append([api.get(f"/v1/meters/{meter}/{what}", "admin", params=period).json()
                            for what in ("intervals", "determinants")])  # fmt: skip
    assert answers[0] == answers[1]
    assert answers[0][1]["consumption"] == "2.000000"


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
