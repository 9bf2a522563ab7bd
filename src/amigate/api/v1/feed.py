"""``/v1/changes``: the change feed billing pulls incrementally, resumable from any cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.pagination import MAX_LIMIT, Cursor, cursor_int, decode_cursor, encode_cursor
from amigate.errors import FeedCursorExpired
from amigate.storage.feed_queries import Change, read_changes

router = APIRouter(tags=["billing"], dependencies=[Depends(require("billing"))])


class ChangeOut(BaseModel):
    """Something that changed.

    * ``intervals``: new intervals as collected (version 1) on a series: ``rows`` of
      them, starting from ``first_start`` to ``last_start``.
    * ``versions``: new versions (estimates, substitutes, edits) of intervals of a
      series starting in that range.
    * ``anomaly``: an anomaly was raised or moved to ``status``.
    """

    model_config = ConfigDict(extra="forbid")

    cursor: str = Field(description="resume after this entry by passing it as cursor")
    kind: Literal["intervals", "versions", "anomaly"]
    meter_id: int | None
    channel: str | None
    first_start: datetime | None = Field(description="earliest interval start, or anomaly start")
    last_start: datetime | None = Field(description="latest interval start, or anomaly end")
    rows: int = Field(description="rows stored by this change")
    anomaly_id: int | None
    status: str | None = Field(description="the anomaly's new status")
    recorded_at: datetime


class FeedPage(BaseModel):
    """A page of the change feed."""

    model_config = ConfigDict(extra="forbid")

    items: list[ChangeOut]
    next_cursor: str = Field(description="pass back to get what changed next (never null)")
    has_more: bool = Field(description="more entries are available right now")


def _cursor(change: Change) -> str:
    return encode_cursor("changes", [change.txid, change.id])


@router.get(
    "/changes", response_model=FeedPage, summary="What changed after a cursor",
    responses=problem_responses(400, 410),
)  # fmt: skip
def changes(
    request: Request,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> FeedPage:
    """New intervals, new interval versions and anomaly changes, oldest first, after the
    cursor (from the beginning without one). Each entry has its own cursor, so a client that
    stops mid-page resumes after the last entry it processed: nothing is skipped and nothing
    comes twice. An entry names a series and a range: read it with
    ``/v1/meters/{id}/intervals`` and store what you read by (meter, channel, start, version).
    When ``has_more`` is false, poll again later with ``next_cursor``. Entries are kept
    ``feed_retention_days``; a cursor older than that gets 410 ``cursor-expired``: start again
    without a cursor and reconcile from the series."""
    key = decode_cursor("changes", cursor)
    after = None if key is None else _key(key)
    try:
        found = read_changes(request.app.state.engine, after, limit + 1)
    except FeedCursorExpired as exc:
        raise ApiProblem("cursor-expired", str(exc)) from exc
    page = found[:limit]
    items = [_out(c) for c in page]
    last = items[-1].cursor if items else encode_cursor("changes", list(after or (0, 0)))
    return FeedPage(items=items, next_cursor=last, has_more=len(found) > limit)


def _out(c: Change) -> ChangeOut:
    return ChangeOut(
        cursor=_cursor(c), kind=c.kind, meter_id=c.meter_id, channel=c.channel,
        first_start=c.first_at, last_start=c.last_at, rows=c.rows, anomaly_id=c.anomaly_id,
        status=c.status, recorded_at=c.recorded_at,
    )  # fmt: skip


def _key(key: list[object]) -> tuple[int, int]:
    if len(key) != 2:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    txid, ident = cursor_int(key[0]), cursor_int(key[1])
    if not (0 <= txid < 2**63 and 0 <= ident < 2**63):
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    return txid, ident
