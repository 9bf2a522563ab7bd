"""Request limits: body size, and no query parameters a route does not know."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amigate.api.v1.errors import ApiProblem, problem_response


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is refused with 413.

    A declared ``Content-Length`` over the limit is refused before reading (the
    server reads no more than it declares); a chunked body is read up to the
    limit before the application sees it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, receive, send)
                return
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read the body up to the limit, then replay it.
        if not any(name == b"content-length" for name, _ in scope.get("headers", ())):
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            "payload-too-large", f"request bodies are limited to {self.max_bytes} bytes",
            scope.get("path", ""), headers={"Connection": "close"},
        )  # fmt: skip
        await response(scope, receive, send)


_KNOWN: dict[tuple[str, frozenset[str]], frozenset[str]] = {}


def _known_query(route: APIRoute) -> frozenset[str]:
    key = (route.path_format, frozenset(route.methods or ()))
    known = _KNOWN.get(key)
    if known is None:
        known = _KNOWN[key] = frozenset(_query_names(route.dependant))
    return known


def _query_names(dependant: Dependant) -> list[str]:
    names = [p.alias for p in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return names


async def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not declare (a typo must not widen a query).

    Asynchronous because it only looks at the request: FastAPI runs a synchronous
    dependency in a worker thread, a hop each request would pay for.

    Raises:
        ApiProblem: ``validation-error`` naming the unknown parameters.
    """
    route: Any = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _known_query(route))
    if unknown:
        raise ApiProblem("validation-error", f"unknown query parameters: {', '.join(unknown)}")
