"""FastAPI application factory. Nothing is built at import time."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from amigate import __version__
from amigate.config import Settings
from amigate.errors import AmigateError
from amigate.storage import current_revision, head_revision


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """Build the API over an engine whose schema is migrated.

    Args:
        settings: the effective settings.
        engine: the database engine (owned by the caller).
    """
    app = FastAPI(
        title="amigate",
        version=__version__,
        summary="Validated meter reads, billing determinants and anomaly flags.",
    )
    app.state.settings = settings
    app.state.engine = engine

    @app.get("/healthz", tags=["operations"], summary="Liveness and database health")
    def healthz() -> JSONResponse:
        """Report whether the service and its database are usable (503 when the database is not)."""
        body: dict[str, Any] = {"status": "ok", "version": __version__,
                                "database": engine.dialect.name}  # fmt: skip
        try:
            current, head = current_revision(engine), head_revision(engine)
        except AmigateError as exc:
            body.update(status="unavailable", error=str(exc))
            return JSONResponse(body, status_code=503)
        body["schema"] = current
        if current != head:
            body.update(status="unavailable", error=f"schema at {current}, expected {head}")
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    return app
