"""The billing reads that make most of the traffic, answered without FastAPI's routing
and parameter solving when their request is plain.

A meter's interval series (items or blocks) and its determinant are what billing
systems call by the thousand. FastAPI's part of such a request (matching the route
through the included routers, solving the dependencies, validating each parameter)
cost about 0.7 ms of CPU on this machine: as much as computing a SQLite determinant.
This ASGI middleware answers those three ``GET`` routes itself when the request is
plain: the path's meter id in canonical form, an ``X-API-Key`` header, and only
parameters the route knows, each once, in strict forms (times as
``YYYY-MM-DDTHH:MM:SS[.ffffff]`` with ``Z`` or ``±HH:MM``, a limit in digits, a channel
and a cursor in their documented patterns). It then checks the key and runs the
route's own function (on one database connection for both), and renders an error
with the app's own handler. Any other
request, and any request it cannot parse, goes to FastAPI unchanged, so FastAPI
still reports every malformed request. tests/api/test_fast_lane.py checks that
both answer random requests with the same status, headers and bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from amigate.api.v1.auth import check_key
from amigate.api.v1.blocks import _blocks
from amigate.api.v1.determinants import _meter_determinant
from amigate.api.v1.intervals import _intervals
from amigate.api.v1.pagination import MAX_SERIES_LIMIT
from amigate.api.v1.reads import bounded_read
from amigate.storage.engine import one_connection

_PATH = re.compile(r"/v1/meters/([1-9][0-9]{0,9})/(intervals|intervals/blocks|determinants)")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                   r"(Z|[+-][0-9]{2}:[0-9]{2})")  # fmt: skip
_CHANNEL = re.compile(r"[0-9A-Za-z.:_\-]{1,32}")  # schemas.Channel
_CURSOR = re.compile(r"[A-Za-z0-9_\-]{1,512}")  # pagination.Cursor
_LIMIT = re.compile(r"[1-9][0-9]{0,5}")
_MAX_METER_ID = 2**31 - 1  # schemas.MeterId


def _time(text: str) -> datetime | None:
    if _TIME.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a day or hour out of range: FastAPI says which
        return None


def _period(query: dict[str, str]) -> tuple[datetime, datetime, str] | None:
    """start, end and channel, taken out of ``query``; None when one is not plain."""
    start, end = _time(query.pop("start", "")), _time(query.pop("end", ""))
    channel = query.pop("channel", "1.8.0")
    if start is None or end is None or _CHANNEL.fullmatch(channel) is None:
        return None
    return start, end, channel


def _series(query: dict[str, str], versions: tuple[str, ...]) -> tuple[Any, ...] | None:
    """version, limit and cursor of a series request (the rest of ``query``), or None."""
    version = query.pop("version", "latest")
    limit_text = query.pop("limit", "10000")
    cursor = query.pop("cursor", None)
    if (
        query or version not in versions or _LIMIT.fullmatch(limit_text) is None
        or int(limit_text) > MAX_SERIES_LIMIT
        or (cursor is not None and _CURSOR.fullmatch(cursor) is None)
    ):  # fmt: skip
        return None
    return version, int(limit_text), cursor


def plain_route(
    path: str, query_string: bytes
) -> tuple[str, Callable[..., Response], tuple[Any, ...]] | None:
    """The scope and function of a plain request to one of the routes, with its
    arguments after the request; None for any other request."""
    matched = _PATH.fullmatch(path)
    if matched is None:
        return None
    meter_id = int(matched[1])
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if meter_id > _MAX_METER_ID or len(query) < len(pairs):  # over MeterId, or a name twice
        return None
    period = _period(query)
    if period is None:
        return None
    start, end, channel = period
    if matched[2] == "determinants":
        return None if query else ("billing", _meter_determinant, (meter_id, channel, start, end))
    blocks = matched[2] == "intervals/blocks"
    found = _series(query, ("latest", "original") if blocks else ("latest", "original", "all"))
    if found is None:
        return None
    return "read", _blocks if blocks else _intervals, (meter_id, start, end, channel, *found)


class FastLane:
    """ASGI middleware: plain requests of the billing reads, answered directly."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app`` (the rest of the application)."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        route = plain_route(scope["path"], scope["query_string"])
        key = None if route is None else next(
            (v for k, v in scope["headers"] if k == b"x-api-key"), None
        )  # fmt: skip
        if route is None or not key:
            await self.app(scope, receive, send)
            return
        needed, work, args = route
        request = Request(scope, receive)
        try:
            response = await bounded_read(request, _answer, request, key.decode("latin-1"),
                                          needed, work, args)  # fmt: skip
        except Exception as exc:
            handler = _handler(request, exc)
            if handler is None:
                raise  # to the server-error middleware, as from FastAPI
            response = await handler(request, exc)
        await response(scope, receive, send)


def _answer(
    request: Request, key: str, scope: str, work: Callable[..., Response], args: tuple[Any, ...]
) -> Response:
    """Check the key, then answer: on one database connection (one checkout, and one
    hand-over to a worker thread on PostgreSQL, where FastAPI's way takes two)."""
    with one_connection(request.app.state.engine):
        check_key(request, key, scope)
        return work(request, *args)


def _handler(request: Request, exc: Exception) -> Any:
    """The app's handler of ``exc``, or None when only the catch-all one takes it."""
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None
