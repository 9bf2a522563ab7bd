"""FastAPI application factory. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from amigate import __version__
from amigate.api.v1 import install as install_v1
from amigate.api.v1.auth import RateLimiter, require
from amigate.api.v1.errors import problem_responses
from amigate.config import Settings
from amigate.errors import AmigateError, ServiceUnreachable
from amigate.metrics import CONTENT_TYPE, Metrics
from amigate.storage import current_revision, head_revision

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "not available (the body says why)",
          "content": {"application/json": {"schema": {"type": "object"}}}},
}  # fmt: skip

#: Whether collection is running: ``(ready, what is missing)``.
Readiness = Callable[[], tuple[bool, str]]


class MetricsSource(Protocol):
    """What ``/metrics`` serves: the service's :class:`Metrics`, or in an API process its
    link to the service."""

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    metrics: MetricsSource | None = None,
    readiness: Readiness | None = None,
    inline_reads: bool = False,
    rate_limiter: RateLimiter | None = None,
) -> FastAPI:
    """Build the API over an engine whose schema is migrated.

    Args:
        settings: the effective settings.
        engine: the database engine (owned by the caller).
        metrics: the service's metrics, served on ``/metrics`` (default: an empty set).
            In an API process, its link to the service.
        readiness: tells whether the service's own parts (bus workers) are up;
            ``/readyz`` also requires the database and a current schema.
        inline_reads: on SQLite, run the reads of one meter in the event loop instead of
            worker threads (see ``amigate.api.v1.reads``): for a loop that serves only
            the API, an API process's, not the service's, which drives the buses.
        rate_limiter: the per-key rate limit (default: this process's own, from the
            settings); API processes share one (``amigate.api.rate_buckets``).
    """
    app = FastAPI(
        title="amigate",
        version=__version__,
        summary="Validated meter reads, billing determinants and anomaly flags.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.inline_reads = inline_reads and engine.dialect.name == "sqlite"
    app.state.metrics = source = metrics or Metrics()
    install_v1(app, settings, engine, rate_limiter)

    def database() -> tuple[dict[str, Any], str | None]:
        body: dict[str, Any] = {"version": __version__, "database": engine.dialect.name}
        try:
            current, head = current_revision(engine), head_revision(engine)
        except AmigateError as exc:
            return body, str(exc)
        body["schema"] = current
        if current != head:
            return body, f"schema at {current}, expected {head}"
        return body, None

    @app.get("/healthz", tags=["operations"], summary="Liveness and database health",
             responses=_UNAVAILABLE)  # fmt: skip
    def healthz() -> JSONResponse:
        """Report whether the service and its database are usable (503 when the database is not)."""
        body, error = database()
        if error is not None:
            return JSONResponse({"status": "unavailable", **body, "error": error}, 503)
        return JSONResponse({"status": "ok", **body})

    @app.get("/readyz", tags=["operations"], summary="Ready to collect and serve",
             responses=_UNAVAILABLE)  # fmt: skip
    def readyz() -> JSONResponse:
        """200 once the database is reachable, its schema current and the bus workers started."""
        body, error = database()
        if error is None and readiness is not None:
            ready, missing = readiness()
            if not ready:
                error = missing
        if error is not None:
            return JSONResponse({"status": "not ready", **body, "error": error}, 503)
        return JSONResponse({"status": "ready", **body})

    guard = [] if settings.metrics_public else [Depends(require("admin"))]

    metrics_doc: dict[int | str, dict[str, Any]] = {
        200: {"description": "Prometheus text exposition format",
              "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
        **_UNAVAILABLE,
    }  # fmt: skip
    if guard:
        metrics_doc |= problem_responses()

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", dependencies=guard,
             response_class=Response, responses=metrics_doc)  # fmt: skip
    def prometheus() -> Response:
        """Collection metrics in Prometheus text format (an admin key unless metrics_public);
        503 when an API process cannot reach the service."""
        try:
            return Response(source.render(), media_type=CONTENT_TYPE)
        except ServiceUnreachable as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, 503)

    return app
