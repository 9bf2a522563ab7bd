"""Errors as ``application/problem+json`` (RFC 9457), one stable ``type`` per kind of error.

Clients branch on ``type``; ``title`` is its human name and never changes for a
type; ``detail`` explains this occurrence. No stack trace ever reaches a client:
an unexpected error is logged here and answered with ``internal-error``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from amigate.errors import AmigateError, ReadingRejected, StorageUnavailable

_LOG = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:amigate:problem:"

#: slug -> (status, title): the stable catalogue of problem types.
PROBLEMS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request is malformed"),
    "invalid-cursor": (400, "The pagination cursor is not valid"),
    "unauthorized": (401, "An API key is required"),
    "forbidden": (403, "The API key lacks the scope this operation needs"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed on this resource"),
    "conflict": (409, "The resource is not in a state that allows this operation"),
    "cursor-expired": (410, "What followed this cursor is no longer kept"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "The request body must be JSON"),
    "validation-error": (422, "The request is not valid"),
    "range-too-large": (422, "The time range is longer than allowed"),
    "rate-limited": (429, "Too many requests for this API key"),
    "internal-error": (500, "Internal error"),
    "unavailable": (503, "The database is unavailable"),
}
_BY_STATUS = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "conflict", 413: "payload-too-large",
    415: "unsupported-media-type", 422: "validation-error", 429: "rate-limited",
    503: "unavailable",
}  # fmt: skip


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int] = Field(description="path to the input, e.g. ['query', 'start']")
    msg: str = Field(description="what is wrong")
    type: str = Field(description="machine-readable kind of the error")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:amigate:problem:forbidden",
                    "title": PROBLEMS["forbidden"][1],
                    "status": 403,
                    "detail": "this operation needs the 'billing' scope",
                    "instance": "/v1/determinants",
                }
            ]
        },
    )

    type: str = Field(description="stable identifier of the kind of problem (a URN)")
    title: str = Field(description="short summary of the kind of problem")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong in this occurrence")
    instance: str = Field(description="the path of the request")
    errors: list[FieldError] | None = Field(
        default=None, description="the invalid inputs (validation errors only)"
    )


class ApiProblem(AmigateError):
    """Raised by routes to answer with a problem document.

    Attributes:
        slug: the problem type (a key of ``PROBLEMS``).
        detail: what went wrong in this occurrence.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(self, slug: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        if slug not in PROBLEMS:
            raise ValueError(f"unknown problem type {slug!r}")
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}


def problem_response(
    slug: str,
    detail: str,
    instance: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A ``problem+json`` response of type ``slug``."""
    status, title = PROBLEMS[slug]
    body: dict[str, Any] = {
        "type": _TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail,
        "instance": instance,
    }  # fmt: skip
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem documents for ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({400, 401, 403, 422, 429, 500, 503, *statuses}):
        slugs = [s for s, (code, _) in PROBLEMS.items() if code == status]
        out[status] = {
            "description": "; ".join(PROBLEMS[s][1] for s in slugs)
            + " (types: " + ", ".join(_TYPE_PREFIX + s for s in slugs) + ")",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }  # fmt: skip
    return out


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.slug, exc.detail, request.url.path, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            "validation-error", f"{where}: {first['msg']}" if where else str(first["msg"]),
            request.url.path, errors=errors,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _BY_STATUS.get(exc.status_code, "bad-request")
        detail = exc.detail if isinstance(exc.detail, str) else PROBLEMS[slug][1]
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(slug, detail, request.url.path, headers=headers)

    @app.exception_handler(ReadingRejected)
    async def _rejected(request: Request, exc: ReadingRejected) -> JSONResponse:
        return problem_response("validation-error", str(exc), request.url.path)

    @app.exception_handler(StorageUnavailable)
    async def _unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        _LOG.warning("API request %s: %s", request.url.path, exc)
        return problem_response(
            "unavailable", "the database is unavailable; retry later", request.url.path,
            headers={"Retry-After": "5"},
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _LOG.error("API request %s failed", request.url.path, exc_info=exc)
        return problem_response(
            "internal-error", "the request failed; the error is logged on the server",
            request.url.path,
        )  # fmt: skip
