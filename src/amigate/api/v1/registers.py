"""``/v1/meters/{id}/registers``: register reads in a range and the read at or before a time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.meters import channel_of, require_meter
from amigate.api.v1.pagination import (
    Cursor,
    Limit,
    Page,
    check_range,
    cursor_time,
    decode_cursor,
    encode_cursor,
)
from amigate.api.v1.schemas import Channel, MeterId, RegisterReadOut, energy, source_name
from amigate.storage import api_queries
from amigate.storage.api_queries import ReadRow

router = APIRouter(tags=["register reads"], dependencies=[Depends(require("read"))])


def read_out(meter_id: int, channel: str, row: ReadRow) -> RegisterReadOut:
    """The API view of a stored register read."""
    return RegisterReadOut(
        meter_id=meter_id, channel=channel, read_at=row.read_at, value=energy(row.value),
        collected_at=row.collected_at, source=source_name(row.source),
        clock_offset_s=None if row.clock_offset_ms is None else row.clock_offset_ms / 1000,
    )  # fmt: skip


@router.get(
    "/meters/{meter_id}/registers", response_model=Page[RegisterReadOut],
    summary="Register reads in a time range", responses=problem_responses(400, 404),
)  # fmt: skip
def register_reads(
    request: Request,
    meter_id: MeterId,
    start: Annotated[datetime, Query(description="first read time included (with offset)")],
    end: Annotated[datetime, Query(description="first read time excluded (with offset)")],
    channel: Channel = "1.8.0",
    limit: Limit = 1000,
    cursor: Cursor = None,
) -> Page[RegisterReadOut]:
    """Cumulative register values as the meter reported them (secondary), by read time."""
    require_meter(request, meter_id)
    check_range(start, end, request.app.state.settings.api_max_range_days)
    key = decode_cursor("registers", cursor)
    after = None if key is None else cursor_time(key[0] if key else None)
    engine = request.app.state.engine
    cid = channel_of(request, channel)
    rows = [] if cid is None else api_queries.reads_page(
        engine, meter_id, cid, start, end, after=after, limit=limit + 1
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[RegisterReadOut](
        items=[read_out(meter_id, channel, r) for r in rows],
        next_cursor=encode_cursor("registers", [rows[-1].read_at.isoformat()]) if more else None,
    )


@router.get(
    "/meters/{meter_id}/registers/at", response_model=RegisterReadOut,
    summary="The register read at or before a time", responses=problem_responses(404),
)  # fmt: skip
def register_read_at(
    request: Request,
    meter_id: MeterId,
    at: Annotated[datetime, Query(description="the time (with offset)")],
    channel: Channel = "1.8.0",
) -> RegisterReadOut:
    """The latest read taken at or before ``at`` (a billing start or end read); 404 when the
    meter has none that early."""
    require_meter(request, meter_id)
    check_range(at, at + timedelta(seconds=1), 1)
    engine = request.app.state.engine
    cid = channel_of(request, channel)
    row = None if cid is None else api_queries.read_at_or_before(engine, meter_id, cid, at)
    if row is None:
        raise ApiProblem("not-found", f"meter {meter_id} has no {channel} read at or before {at}")
    return read_out(meter_id, channel, row)
