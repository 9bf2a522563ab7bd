"""``/v1/meters``: the meter list and one meter with its collection health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.pagination import Cursor, Limit, Page, cursor_int, decode_cursor, encode_cursor
from amigate.api.v1.schemas import Health, MeterDetail, MeterId, MeterOut, SafeText, exact
from amigate.normalize import floor_boundary
from amigate.storage import api_queries
from amigate.storage.models import MeterRow

router = APIRouter(tags=["meters"], dependencies=[Depends(require("read"))])
Filter = Annotated[str | None, Query(max_length=128, pattern=SafeText)]


def meter_out(row: MeterRow) -> MeterOut:
    """The API view of a stored meter."""
    return MeterOut(
        id=row.id, address=row.address, protocol=row.protocol, model=row.model, bus=row.bus,
        service_point=row.service_point, ct_ratio=exact(row.ct_ratio),
        pt_ratio=exact(row.pt_ratio), multiplier=exact(row.ct_ratio * row.pt_ratio),
        timezone=row.timezone, transformer_area=row.transformer_area, role=row.role,
        status=row.status,
    )  # fmt: skip


def channel_of(request: Request, code: str) -> int | None:
    """The id of a channel code (None: nothing was ever stored on it), remembered by the app:
    a channel's id never changes once it exists."""
    known: dict[str, int] = request.app.state.channel_ids
    found = known.get(code)
    if found is None:
        found = api_queries.channel_id(request.app.state.engine, code)
        if found is not None and len(known) < 10_000:
            known[code] = found
    return found


def get_meter(request: Request, meter_id: int) -> MeterRow:
    """The stored meter, or a 404 problem.

    Raises:
        ApiProblem: ``not-found``.
    """
    row = api_queries.meter(request.app.state.engine, meter_id)
    if row is None:
        raise ApiProblem("not-found", f"no meter {meter_id}")
    return row


def require_meter(request: Request, meter_id: int) -> None:
    """A 404 problem unless the meter is stored (a lighter check than :func:`get_meter`).

    Raises:
        ApiProblem: ``not-found``.
    """
    if not api_queries.existing_meters(request.app.state.engine, [meter_id]):
        raise ApiProblem("not-found", f"no meter {meter_id}")


@router.get(
    "/meters", response_model=Page[MeterOut], summary="List meters",
    responses=problem_responses(400),
)  # fmt: skip
def list_meters(
    request: Request,
    area: Filter = None,
    model: Filter = None,
    status: Literal["active", "unavailable", "retired"] | None = None,
    bus: Filter = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[MeterOut]:
    """Meters by id, filtered by transformer area, model, status and bus (all optional)."""
    key = decode_cursor("meters", cursor)
    after = None if key is None else cursor_int(key[0])
    rows = api_queries.meters_page(
        request.app.state.engine, after=after, limit=limit + 1,
        filters={"transformer_area": area, "model": model, "status": status, "bus": bus},
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[MeterOut](
        items=[meter_out(r) for r in rows],
        next_cursor=encode_cursor("meters", [rows[-1].id]) if more else None,
    )


@router.get(
    "/meters/{meter_id}", response_model=MeterDetail, summary="One meter and its health",
    responses=problem_responses(404),
)  # fmt: skip
def meter_detail(request: Request, meter_id: MeterId) -> MeterDetail:
    """A meter, with its latest register read and the share of the last 24 hours' intervals
    that were read (quality actual)."""
    row = get_meter(request, meter_id)
    interval = request.app.state.settings.interval
    end = floor_boundary(datetime.now(UTC), interval)
    start = end - timedelta(days=1)
    last, actual, _stored = api_queries.collection_health(
        request.app.state.engine, meter_id, start, end
    )
    expected = int(timedelta(days=1) / interval)
    health = Health(
        last_read_at=last, window_start=start, window_end=end, expected_intervals=expected,
        actual_intervals=actual, success_rate=min(1.0, actual / expected),
    )  # fmt: skip
    return MeterDetail(**meter_out(row).model_dump(), health=health)
