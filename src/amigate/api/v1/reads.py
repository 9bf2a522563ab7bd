"""Where a request's database reads run: in the event loop of an API process on SQLite,
else in a worker thread.

A SQLite read is CPU work of this process (its pages come from the page cache or a
memory map): a worker thread gives it no parallelism under the interpreter lock and
costs two hand-overs a call, plus, under concurrent requests, the lock's convoys. On
this 2-CPU machine a single-meter determinant spent as much CPU handing work to
threads (the key check, then the route) as computing. A PostgreSQL read waits on the
network, and a thread lets the loop serve others meanwhile. The service's own loop
drives the buses: when it serves the API itself (``api_processes`` = 1), reads stay in
threads (``create_app(inline_reads=...)``).

Only bounded reads run inline (a key check, one meter's series or determinant: a few
milliseconds at most); batches stay in threads, so one never holds the loop for long.
A SQLite page read from a slow disk holds the loop of that API process while it lasts.

On SQLite a process computes one batch at a time (:func:`batch_read`): its CPU is the
process's whole share anyway (the interpreter lock), and sharing it between four
batches made all four finish near the end, where taking them in turn finishes each
sooner on average (1,000-meter batches under 8 clients, before the day totals' covering
index: median 1.46–1.49 s against 1.53–1.61 s; the slowest is the same).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request
from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def bounded_read(
    request: Request, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``work(*args, **kwargs)``: in the loop when the app reads inline (an API process on
    SQLite), else in a worker thread."""
    if request.app.state.inline_reads:
        return work(*args, **kwargs)
    return await run_in_threadpool(work, *args, **kwargs)


#: one batch at a time per event loop (an API process has one; tests start several)
_ONE_BATCH: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def batch_read(
    request: Request, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``work(*args, **kwargs)`` in a worker thread; on SQLite one at a time per process."""
    if request.app.state.engine.dialect.name != "sqlite":
        return await run_in_threadpool(work, *args, **kwargs)
    loop = asyncio.get_running_loop()
    limiter = _ONE_BATCH.get(loop)
    if limiter is None:
        limiter = _ONE_BATCH[loop] = CapacityLimiter(1)
    return await anyio.to_thread.run_sync(functools.partial(work, *args, **kwargs),
                                          limiter=limiter)  # fmt: skip
