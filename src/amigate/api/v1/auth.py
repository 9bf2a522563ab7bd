"""API-key authentication, scopes and the per-key rate limit.

Every ``/v1`` route depends on :func:`require` with the scope it needs: no key or
an unknown or revoked one is 401, a key without the scope is 403, and a key over
its rate is 429 with ``Retry-After``. Keys are accepted only in the
``X-API-Key`` header, never in the query string (which ends up in logs).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from amigate.api.v1.errors import ApiProblem
from amigate.api.v1.reads import bounded_read
from amigate.storage.api_keys import ApiKey, ApiKeys

_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `amigate apikey create`; scopes: read, billing, operate, admin "
    "(admin implies the others).",
)


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        """Allow ``rate`` requests per second with bursts of ``burst``."""
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when allowed, else seconds until one is free."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens, wait = self.spend(tokens, now - last)
            self._buckets[key] = (tokens, now)
            return wait

    def spend(self, tokens: float, elapsed: float) -> tuple[float, float]:
        """A bucket holding ``tokens`` ``elapsed`` seconds ago, asked for one now: the
        tokens it keeps, and 0 when the token was given, else seconds until one is free."""
        tokens = min(self.burst, tokens + max(0.0, elapsed) * self.rate)
        if tokens >= 1:
            return tokens - 1, 0.0
        return tokens, (1 - tokens) / self.rate


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that authenticates the request and requires ``scope``."""

    async def dependency(request: Request, key: Annotated[str | None, Depends(_HEADER)]) -> ApiKey:
        return await authorize(request, key, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


async def authorize(request: Request, key: str | None, scope: str) -> ApiKey:
    """:func:`check_key`, its database read run as the request's reads are."""
    return await bounded_read(request, check_key, request, key, scope)


def check_key(request: Request, key: str | None, scope: str) -> ApiKey:
    """The API key ``key`` sent with ``request``, checked: known, not revoked, within its
    rate, and holding ``scope``.

    Raises:
        ApiProblem: ``unauthorized``, ``rate-limited`` or ``forbidden``.
    """
    if not key:
        raise ApiProblem(
            "unauthorized", "send an API key in the X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )  # fmt: skip
    keys: ApiKeys = request.app.state.api_keys
    found = keys.authenticate(key)
    if found is None:
        raise ApiProblem(
            "unauthorized", "the API key is unknown or revoked",
            headers={"WWW-Authenticate": "ApiKey"},
        )  # fmt: skip
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(found.prefix)
    if wait > 0:
        raise ApiProblem(
            "rate-limited",
            f"this key may make {limiter.rate:g} requests a second; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if not found.allows(scope):
        raise ApiProblem("forbidden", f"this operation needs the {scope!r} scope")
    request.state.api_key = found
    return found
