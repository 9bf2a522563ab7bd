"""``/v1/areas/{area}/line-loss``: energy lost in a transformer area, per local day."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.meters import channel_of
from amigate.api.v1.pagination import check_range
from amigate.api.v1.schemas import Channel, DecimalStr, SafeText, energy
from amigate.billing.buckets import aggregate, buckets
from amigate.domain import MeterRole
from amigate.storage import api_queries

router = APIRouter(tags=["meters"], dependencies=[Depends(require("read"))])
_ALL = 100_000


class LineLossDay(BaseModel):
    """Line loss of one local day."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    supplied: DecimalStr = Field(description="energy of the area-total meters")
    consumed: DecimalStr = Field(description="energy of the customer meters")
    loss: DecimalStr = Field(description="supplied - consumed")
    loss_ratio: float | None = Field(description="loss / supplied (null when nothing supplied)")
    complete: bool = Field(description="every meter has every interval of the day")


class LineLoss(BaseModel):
    """Line loss of a transformer area per local day."""

    model_config = ConfigDict(extra="forbid")

    area: str
    supply_meters: list[int]
    customer_meters: list[int]
    days: list[LineLossDay]


@router.get(
    "/areas/{area}/line-loss", response_model=LineLoss, summary="Line loss per day",
    responses=problem_responses(404),
)  # fmt: skip
def line_loss(
    request: Request,
    area: Annotated[str, Path(max_length=64, pattern=SafeText, description="transformer area")],
    start: Annotated[datetime, Query(description="first day start (with offset)")],
    end: Annotated[datetime, Query(description="end, excluded (with offset)")],
    channel: Channel = "1.8.0",
) -> LineLoss:
    """Per local day of the site timezone: energy supplied (area-total meters) minus energy
    consumed (customer meters), from the latest interval versions. ``complete`` is false when
    any meter misses an interval that day: the loss is then not reliable."""
    settings = request.app.state.settings
    check_range(start, end, settings.api_max_range_days)
    engine = request.app.state.engine
    meters = api_queries.meters_page(engine, after=None, limit=_ALL,
                                     filters={"transformer_area": area})  # fmt: skip
    if not meters:
        raise ApiProblem("not-found", f"no meter is in transformer area {area!r}")
    zone = settings.timezone
    cid = channel_of(request, channel)
    ids = [m.id for m in meters]
    series = api_queries.batch_series(engine, ids, cid, start, end) if cid is not None else {}
    days = list(buckets(start, end, "day", zone))
    totals = {b.start: [0, 0, True] for b in days}
    supply = [m.id for m in meters if m.role == str(MeterRole.AREA_TOTAL)]
    for meter in meters:
        rows = ((r.ts, r.duration_s, r.value, r.quality) for r in series.get(meter.id, ()))
        for b in aggregate(rows, start, end, "day", zone):
            slot = totals[b.start]
            slot[0 if meter.id in supply else 1] += b.value
            if b.missing or b.completeness(start, end) < 1:
                slot[2] = False
    out = []
    for b in days:
        supplied, consumed, complete = totals[b.start]
        loss = int(supplied) - int(consumed)
        out.append(LineLossDay(
            start=b.start, end=b.end, supplied=energy(int(supplied)),
            consumed=energy(int(consumed)),
            loss=energy(loss), loss_ratio=round(loss / int(supplied), 6) if supplied else None,
            complete=bool(complete),
        ))  # fmt: skip
    return LineLoss(area=area, supply_meters=supply,
                    customer_meters=[m for m in ids if m not in supply], days=out)  # fmt: skip
