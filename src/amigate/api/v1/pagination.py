"""Opaque cursors, page sizes and time ranges shared by the list routes.

A cursor is the sort key of the last item returned, tagged with the list it
belongs to, in URL-safe base64: clients pass it back unchanged and never parse
it. Lists are ordered by a unique key, so a page boundary is exact: items added
later appear on later pages or not at all, and no item is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from amigate.api.v1.errors import ApiProblem

T = TypeVar("T")

#: The largest ``limit`` of a list page; series allow more (one meter-month is 2,880 rows).
MAX_LIMIT = 1000
MAX_SERIES_LIMIT = 10_000
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (1..{MAX_LIMIT})")]
SeriesLimit = Annotated[
    int, Query(ge=1, le=MAX_SERIES_LIMIT, description=f"items per page (1..{MAX_SERIES_LIMIT})")
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512, pattern=r"^[A-Za-z0-9_\-]+$",
        description="the next_cursor of the previous page (opaque); omit for the first page",
    ),
]  # fmt: skip


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    model_config = ConfigDict(extra="forbid")

    items: list[T] = Field(description="the items of this page, in the list's stable order")
    next_cursor: str | None = Field(
        description="pass as cursor to get the next page; null on the last page"
    )


def encode_cursor(kind: str, key: list[Any]) -> str:
    """An opaque cursor for the item with sort key ``key`` in list ``kind``."""
    raw = json.dumps([kind, *key], separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> list[Any] | None:
    """The sort key in ``cursor`` (None for no cursor).

    Raises:
        ApiProblem: ``invalid-cursor``, when it was not made by this list.
    """
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, list) or not value or value[0] != kind:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    return value[1:]


def cursor_time(value: Any) -> datetime:
    """A time from a decoded cursor.

    Raises:
        ApiProblem: ``invalid-cursor``.
    """
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list") from None
    if when.tzinfo is None:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    return when


def cursor_int(value: Any) -> int:
    """An integer from a decoded cursor.

    Raises:
        ApiProblem: ``invalid-cursor``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    return value


def check_time(name: str, value: datetime) -> None:
    """Refuse a naive time or one outside 1970..2199.

    Raises:
        ApiProblem: ``validation-error``.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ApiProblem(
            "validation-error", f"{name} needs a timezone offset (e.g. 2026-01-01T00:00:00+08:00)"
        )
    if not _EARLIEST <= value <= _LATEST:
        raise ApiProblem("validation-error", f"{name} must be within 1970..2199")


def check_range(start: datetime, end: datetime, max_days: int) -> None:
    """Refuse naive times, empty ranges and ranges longer than ``max_days``.

    Raises:
        ApiProblem: ``validation-error`` or ``range-too-large``.
    """
    check_time("start", start)
    check_time("end", end)
    if end <= start:
        raise ApiProblem("validation-error", "end must be after start")
    if end - start > timedelta(days=max_days):
        raise ApiProblem(
            "range-too-large", f"the range is {end - start}; at most {max_days} days are allowed"
        )
