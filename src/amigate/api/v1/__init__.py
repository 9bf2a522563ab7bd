"""The versioned billing API under ``/v1``: routers, errors, keys, limits and OpenAPI.

``install(app, settings, engine)`` mounts it on the application the factory
builds; nothing here runs at import time.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine

from amigate.api.v1 import (
    anomalies,
    areas,
    blocks,
    determinants,
    feed,
    intervals,
    meters,
    registers,
)
from amigate.api.v1.auth import RateLimiter
from amigate.api.v1.errors import Problem, install_error_handlers
from amigate.api.v1.fast_lane import FastLane
from amigate.api.v1.limits import BodyLimit, no_unknown_query
from amigate.config import Settings
from amigate.storage.api_keys import ApiKeys

__all__ = ["install"]

DESCRIPTION = """\
Validated interval reads, register reads, billing determinants and anomalies.

**Authentication.** Every `/v1` operation needs an API key in the `X-API-Key`
header (`amigate apikey create --name NAME --scope SCOPE`). Scopes: `read`
(meters, intervals, register reads, anomalies, line loss), `billing`
(determinants and the change feed), `operate` (anomaly transitions and interval
edits), `admin` (all of them). A key may hold several; a billing system usually
holds `read` and `billing`. No key or a revoked key: 401; a key without the
scope: 403; over the per-key rate: 429 with `Retry-After`.

**Errors** are `application/problem+json` (RFC 9457) with a stable `type` URN
per kind of error; branch on `type`, not on `detail`.

**Values.** Energies are exact decimals in JSON strings (kWh of primary energy
for intervals, as registered for register reads). Times are RFC 3339; inputs
need an offset. Ranges are `[start, end)` and at most `api_max_range_days` long.

**Lists** are paged by an opaque `cursor` (`next_cursor` of the previous page,
null on the last) in a stable order; `limit` caps a page. Unknown query
parameters and unknown body fields are refused (422).
"""


def install(
    app: FastAPI, settings: Settings, engine: Engine, rate_limiter: RateLimiter | None = None
) -> None:
    """Mount the v1 API, its error handlers, limits and OpenAPI additions on ``app``, with
    ``rate_limiter`` (default: the process's own, from the settings)."""
    app.state.api_keys = ApiKeys(engine)
    app.state.rate_limiter = rate_limiter or RateLimiter(settings.api_rate_limit,
                                                         settings.api_rate_burst)  # fmt: skip
    app.state.tou = settings.tou.classifier(settings.timezone)
    app.state.channel_ids = {}
    install_error_handlers(app)
    app.add_middleware(FastLane)  # inside BodyLimit (the last added is the outermost)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(no_unknown_query)])
    for module in (meters, areas, intervals, blocks, registers, determinants, feed, anomalies):
        v1.include_router(module.router)
    app.include_router(v1)
    app.description = DESCRIPTION

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                description=app.description, routes=app.routes, tags=_TAGS,
            )  # fmt: skip
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(problem.pop("$defs", {}))
            components["Problem"] = problem
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_TAGS = [
    {"name": "meters", "description": "Meters and their collection health."},
    {"name": "intervals", "description": "Interval series with quality, versions and edits."},
    {"name": "register reads", "description": "Cumulative register values as read."},
    {"name": "billing", "description": "Billing determinants per period (scope billing)."},
    {"name": "anomalies", "description": "Anomalies raised by validation, and their lifecycle."},
    {"name": "operations", "description": "Health, readiness and metrics (no key)."},
]
