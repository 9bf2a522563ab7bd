"""Each database connection of an API process readied before the process takes requests.

A new PostgreSQL connection's first reads of a hypertable load the catalog entries of
its chunks and their indexes into that server process; its statements are parsed
afresh until psycopg prepares them (from their sixth run), and a prepared statement's
first generic plan, which PostgreSQL weighs at its sixth run, is planned over every
chunk. On the API benchmark's TimescaleDB (31 daily chunks) a connection's first
meter-month determinant took 30–45 ms against 4–6 ms once readied, and binds of the
boundary-read statement of 5–66 ms showed in PostgreSQL's log, one per connection.

So an API process first runs the plain billing reads (the key lookup, a determinant,
a series as items and as blocks: the fast lane's routes, see ``fast_lane``) on each of
its pooled connections, :data:`ROUNDS` times, all connections held at once so that each
thread readies its own. They read the meter with the lowest id over the last calendar
month (in the site's zone) before its latest register read: the month billing most
likely asks for next, whose chunks are then the ones loaded. Nothing is written and
nothing is counted as a request. The warm-up is a courtesy: a database that is away,
an empty one or a failed read ends it with a log line, and the process serves.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request

from amigate.api.v1.fast_lane import plain_route
from amigate.errors import AmigateError
from amigate.storage.api_queries import latest_read_of_first_meter
from amigate.storage.engine import one_connection

_LOG = logging.getLogger("amigate.api")

#: runs of each read per connection: psycopg prepares a statement on its sixth run, and
#: PostgreSQL weighs a generic plan at the sixth run of the prepared statement
ROUNDS = 12
#: the longest a connection waits for the others to be checked out
_GATHER_S = 10.0
#: a key no one has (prefixes are hex): the key lookup runs and finds nothing
_NO_KEY = "amg_warm-up_0"


def warm_period(latest: datetime, zone: ZoneInfo, max_days: int) -> tuple[datetime, datetime]:
    """The calendar month in ``zone`` that ends at or before ``latest`` (its last month
    to bill), cut to the last ``max_days`` days when longer."""
    local = latest.astimezone(zone)
    end = datetime(local.year, local.month, 1, tzinfo=zone)
    before = end - timedelta(days=1)
    start = datetime(before.year, before.month, 1, tzinfo=zone)
    return max(start, end - timedelta(days=max_days)), end


def warm(app: FastAPI, connections: int, *, rounds: int = ROUNDS) -> int:
    """Ready ``connections`` pooled connections of ``app``'s engine; return how many were
    readied (0 when the database is away, holds no meter with a read, or a read failed)."""
    started = time.monotonic()
    engine = app.state.engine
    try:
        target = latest_read_of_first_meter(engine)
    except AmigateError as exc:
        _LOG.warning("API warm-up skipped: %s", exc)
        return 0
    if target is None:
        _LOG.info("API warm-up skipped: no meter has a register read yet")
        return 0
    meter, latest = target
    start, end = warm_period(latest, app.state.tou.zone, app.state.settings.api_max_range_days)
    query = urlencode({"start": start.isoformat(), "end": end.isoformat()}).encode()
    routes = []
    for name in ("determinants", "intervals", "intervals/blocks"):
        path = f"/v1/meters/{meter}/{name}"
        route = plain_route(path, query)
        assert route is not None  # a plain request by construction
        routes.append((_request(app, path, query), route[1], route[2]))
    gathered = threading.Barrier(connections, timeout=_GATHER_S)
    failed: list[BaseException] = []  # the first failure, said once
    said = threading.Lock()

    def ready_one() -> bool:
        try:
            with one_connection(engine):
                gathered.wait()  # every connection checked out: each thread has its own
                for _ in range(rounds):
                    if failed:
                        return False
                    app.state.api_keys.authenticate(_NO_KEY)
                    for request, work, args in routes:
                        work(request, *args)
        except threading.BrokenBarrierError:
            return False  # another connection failed, and said why
        except Exception as exc:  # a courtesy: the process serves whatever happened here
            gathered.abort()
            with said:
                first = not failed
                failed.append(exc)
            if first:
                _LOG.warning("API warm-up stopped (meter %d): %s", meter, exc,
                             exc_info=not isinstance(exc, AmigateError))  # fmt: skip
            return False
        return True

    with ThreadPoolExecutor(connections, thread_name_prefix="warm-up") as pool:
        readied = sum(pool.map(lambda _: ready_one(), range(connections)))
    if failed:
        return 0
    if readied:
        _LOG.info(
            "API warm-up: %d database connections readied in %.2f s (meter %d, %s to %s)",
            readied, time.monotonic() - started, meter, start.date(), end.date(),
        )  # fmt: skip
    return readied


def _request(app: FastAPI, path: str, query: bytes) -> Request:
    """A request to ``app`` as the server would make it, for the route functions."""
    scope: dict[str, Any] = {
        "type": "http", "app": app, "method": "GET", "scheme": "http", "http_version": "1.1",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
        "headers": [(b"host", b"warm-up")], "server": ("warm-up", 80), "client": None,
    }  # fmt: skip
    return Request(scope)
