"""FastAPI application factory. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from amigate import __version__
from amigate.config import Settings
from amigate.errors import AmigateError
from amigate.metrics import CONTENT_TYPE, Metrics
from amigate.storage import current_revision, head_revision

#: Whether collection is running: ``(ready, what is missing)``.
Readiness = Callable[[], tuple[bool, str]]


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    metrics: Metrics | None = None,
    readiness: Readiness | None = None,
) -> FastAPI:
    """Build the API over an engine whose schema is migrated.

    Args:
        settings: the effective settings.
        engine: the database engine (owned by the caller).
        metrics: the service's metrics, served on ``/metrics`` (default: an empty set).
        readiness: tells whether the service's own parts (bus workers) are up;
            ``/readyz`` also requires the database and a current schema.
    """
    app = FastAPI(
        title="amigate",
        version=__version__,
        summary="Validated meter reads, billing determinants and anomaly flags.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics = metrics or Metrics()

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

    @app.get("/healthz", tags=["operations"], summary="Liveness and database health")
    def healthz() -> JSONResponse:
        """Report whether the service and its database are usable (503 when the database is not)."""
        body, error = database()
        if error is not None:
            return JSONResponse({"status": "unavailable", **body, "error": error}, 503)
        return JSONResponse({"status": "ok", **body})

    @app.get("/readyz", tags=["operations"], summary="Ready to collect and serve")
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

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def prometheus() -> Response:
        """Collection metrics in Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app
