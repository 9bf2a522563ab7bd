"""Where a request's database reads run: in the event loop on SQLite, in a worker thread
on PostgreSQL.

A SQLite read is CPU work of this process (its pages come from the page cache or a
memory map): a worker thread gives it no parallelism under the interpreter lock and
costs two hand-overs a call, plus, under concurrent requests, the lock's convoys. On
this 2-CPU machine a single-meter determinant spent as much CPU handing work to
threads (the key check, then the route) as computing. A PostgreSQL read waits on the
network, and a thread lets the loop serve others meanwhile.

Only bounded reads run inline (a key check, one meter's series or determinant: a few
milliseconds at most); batches and exports stay in threads, so one never holds the
loop for long. A SQLite page read from a slow disk holds the loop of that API process
while it lasts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def bounded_read(
    request: Request, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``work(*args, **kwargs)``: in the loop on SQLite, in a worker thread otherwise."""
    if request.app.state.engine.dialect.name == "sqlite":
        return work(*args, **kwargs)
    return await run_in_threadpool(work, *args, **kwargs)
