"""``/v1/meters/{id}/intervals``: interval series, aggregates, CSV export and operator edits."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from amigate.api.v1 import fastjson
from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.meters import channel_of, require_meter
from amigate.api.v1.pagination import (
    Cursor,
    Page,
    SeriesLimit,
    check_range,
    cursor_int,
    cursor_time,
    decode_cursor,
    encode_cursor,
)
from amigate.api.v1.reads import bounded_read
from amigate.api.v1.schemas import (
    BucketOut,
    Channel,
    EditIn,
    IntervalOut,
    MeterId,
    energy,
    quality_name,
    source_name,
)
from amigate.billing.buckets import WIDTHS, Bucket, Unit, aggregate
from amigate.domain import to_micro
from amigate.errors import ReadingRejected, StorageError, StorageUnavailable
from amigate.storage import api_queries, plain_series
from amigate.storage.anomaly_queries import Edit, edit_interval
from amigate.storage.api_keys import ApiKey
from amigate.storage.api_queries import SeriesRow, Version

router = APIRouter(tags=["intervals"])
Start = Annotated[datetime, Query(description="first interval start included (with offset)")]
End = Annotated[datetime, Query(description="first interval start excluded (with offset)")]
VersionQuery = Annotated[
    Version,
    Query(description="latest: what billing sees; original: as collected; all: every version"),
]
TimezoneQuery = Annotated[
    str | None,
    Query(max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$",
          description="IANA timezone of the buckets (default: the site timezone)"),
]  # fmt: skip


def _cursor_time(seconds: int) -> str:
    """An epoch start as the series cursor holds it (what ``datetime.isoformat`` gives)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def interval_out(row: SeriesRow) -> IntervalOut:
    """The API view of one stored interval version."""
    return IntervalOut(
        start=row.ts, end=row.ts + timedelta(seconds=row.duration_s),
        value=None if row.value is None else energy(row.value), quality=quality_name(row.quality),
        version=row.version, source=source_name(row.source), method=row.method,
        reason_codes=row.reason_codes.split(",") if row.reason_codes else [],
        created_by=row.created_by, comment=row.comment, recorded_at=row.recorded_at,
    )  # fmt: skip


def series_args(
    request: Request, meter_id: int, channel: str, start: datetime, end: datetime
) -> int | None:
    """The channel id of a series request (None: nothing stored on it), after checking the
    meter and the range."""
    require_meter(request, meter_id)
    check_range(start, end, request.app.state.settings.api_max_range_days)
    return channel_of(request, channel)


@router.get(
    "/meters/{meter_id}/intervals", response_model=Page[IntervalOut],
    summary="Interval series of a meter", dependencies=[Depends(require("read"))],
    responses=problem_responses(400, 404),
)  # fmt: skip
async def intervals(
    request: Request,
    meter_id: MeterId,
    start: Start,
    end: End,
    channel: Channel = "1.8.0",
    version: VersionQuery = "latest",
    limit: SeriesLimit = 10_000,
    cursor: Cursor = None,
) -> Response:
    """Intervals starting in ``[start, end)`` by (start, version), with quality, method and
    reason codes. A gap is an interval of quality ``missing`` with a null value."""
    return await bounded_read(
        request, _intervals, request, meter_id, start, end, channel, version, limit, cursor
    )


def _intervals(
    request: Request, meter_id: int, start: datetime, end: datetime, channel: str,
    version: Version, limit: int, cursor: str | None,
) -> Response:  # fmt: skip
    cid = series_args(request, meter_id, channel, start, end)
    key = decode_cursor("intervals", cursor)
    after = None if key is None or len(key) != 2 else (cursor_time(key[0]), cursor_int(key[1]))
    if key is not None and after is None:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    if cid is None:
        return Response(fastjson.page([], None), media_type="application/json")
    if version != "all":
        plain = plain_series.plain_series(
            request.app.state.engine, meter_id, cid, start, end, original=version == "original",
            after=None if after is None else after[0], limit=limit,
        )  # fmt: skip
        if plain is not None:
            found, more = plain
            cursor = (encode_cursor("intervals", [_cursor_time(int(found.start[-1])), 1])
                      if more and found.start else None)  # fmt: skip
            return Response(fastjson.page_of(fastjson.plain_intervals(found), cursor),
                            media_type="application/json")  # fmt: skip
    rows, more = api_queries.series(
        request.app.state.engine, meter_id, cid, start, end, version=version, after=after,
        limit=limit,
    )  # fmt: skip
    last = rows[-1] if rows else None
    cursor = (encode_cursor("intervals", [last.ts.isoformat(), last.version])
              if more and last else None)  # fmt: skip
    # The documented Page[IntervalOut], written directly (see fastjson).
    return Response(fastjson.page([fastjson.interval(r) for r in rows], cursor),
                    media_type="application/json")  # fmt: skip


@router.get(
    "/meters/{meter_id}/intervals/aggregate", response_model=Page[BucketOut],
    summary="Interval series aggregated by local hour, day or month",
    dependencies=[Depends(require("read"))], responses=problem_responses(400, 404),
)  # fmt: skip
def aggregated(
    request: Request,
    meter_id: MeterId,
    start: Start,
    end: End,
    bucket: Annotated[Unit, Query(description="bucket width")] = "day",
    channel: Channel = "1.8.0",
    version: Annotated[Literal["latest", "original"], Query()] = "latest",
    timezone: TimezoneQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    cursor: Cursor = None,
) -> Page[BucketOut]:
    """Sums per local bucket with the count of missing and estimated intervals and the
    completeness of each bucket (the share of its time covered by values). Every bucket
    overlapping the range is listed, empty ones included."""
    cid = series_args(request, meter_id, channel, start, end)
    zone = _zone(timezone or request.app.state.settings.site_timezone)
    key = decode_cursor("buckets", cursor)
    after = None if key is None else cursor_time(key[0] if key else None)
    found = _buckets(request, meter_id, cid, start, end, bucket, zone, version)
    items = [b for b in found if after is None or b.start > after]
    page, more = items[:limit], len(items) > limit
    return Page[BucketOut](
        items=[
            BucketOut(start=b.start, end=b.end, value=energy(b.value), intervals=b.with_value,
                      missing=b.missing, estimated=b.not_actual,
                      completeness=round(b.completeness(start, end), 6))
            for b in page
        ],
        next_cursor=encode_cursor("buckets", [page[-1].start.isoformat()]) if more else None,
    )  # fmt: skip


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise ApiProblem("validation-error", f"unknown timezone {name!r}") from None


def _buckets(
    request: Request, meter_id: int, cid: int | None, start: datetime, end: datetime,
    unit: Unit, zone: ZoneInfo, version: Literal["latest", "original"],
) -> list[Bucket]:  # fmt: skip
    engine = request.app.state.engine
    if cid is None:
        return aggregate([], start, end, unit, zone)
    if engine.dialect.name == "postgresql":
        found = {
            b.start: b for b in api_queries.buckets_timescale(
                engine, meter_id, cid, start, end, width=WIDTHS[unit], timezone=zone.key,
                version=version,
            )
        }  # fmt: skip
        out = aggregate([], start, end, unit, zone)
        for b in out:
            row = found.get(b.start)
            if row is not None:
                b.value, b.with_value, b.missing = row.value, row.with_value, row.missing
                b.not_actual, b.covered_s = row.not_actual, row.covered_s
        return out
    rows, _ = api_queries.series(engine, meter_id, cid, start, end, version=version)
    return aggregate(((r.ts, r.duration_s, r.value, r.quality) for r in rows), start, end, unit,
                     zone)  # fmt: skip


@router.get(
    "/meters/{meter_id}/intervals.csv", summary="Interval series as CSV",
    dependencies=[Depends(require("read"))], response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "one row per interval version"},
               **problem_responses(404)},
)  # fmt: skip
def intervals_csv(
    request: Request,
    meter_id: MeterId,
    start: Start,
    end: End,
    channel: Channel = "1.8.0",
    version: VersionQuery = "latest",
) -> Response:
    """The whole series of ``[start, end)`` as CSV (UTF-8 with a header row)."""
    cid = series_args(request, meter_id, channel, start, end)
    rows = (
        [] if cid is None
        else api_queries.series(request.app.state.engine, meter_id, cid, start, end,
                                version=version)[0]
    )  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["meter_id", "channel", "start", "end", "value", "quality", "version",
                     "source", "method", "reason_codes", "created_by", "comment"])  # fmt: skip
    for r in rows:
        iv = interval_out(r)
        writer.writerow([
            meter_id, channel, iv.start.isoformat(), iv.end.isoformat(), iv.value or "",
            iv.quality, iv.version, iv.source, "" if iv.method is None else iv.method,
            " ".join(iv.reason_codes), iv.created_by or "", iv.comment or "",
        ])  # fmt: skip
    name = f"meter-{meter_id}-{channel}.csv"
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.post(
    "/meters/{meter_id}/intervals/edits", response_model=IntervalOut, status_code=201,
    summary="Correct one interval (a new version)", responses=problem_responses(404, 409, 413),
)  # fmt: skip
def edit(
    request: Request,
    meter_id: MeterId,
    body: EditIn,
    key: Annotated[ApiKey, Depends(require("operate"))],
) -> IntervalOut:
    """Store an operator's value for one interval as its next version (quality substituted,
    source manual, or missing when the value is null), keeping every earlier version. The
    reason is stored as the version's comment and the key's name as its author."""
    require_meter(request, meter_id)
    check_range(body.start, body.start + timedelta(seconds=1), 1)
    engine = request.app.state.engine
    cid = channel_of(request, body.channel)
    if cid is None:
        raise ApiProblem("not-found", f"no interval on channel {body.channel} of meter {meter_id}")
    try:
        micro = None if body.value is None else to_micro(Decimal(body.value))
    except (ReadingRejected, InvalidOperation) as exc:
        raise ApiProblem("validation-error", f"value: {exc}") from None
    if micro is not None and micro < 0:
        raise ApiProblem("validation-error", "value: energy cannot be negative")
    try:
        version, _duration, _recorded = edit_interval(engine, Edit(
            meter_id=meter_id, channel_id=cid, ts=body.start, value=micro,
            reason_codes=",".join(body.reason_codes or ["edit"]), comment=body.reason,
            who=f"key:{key.name}",
        ))  # fmt: skip
    except StorageUnavailable:
        raise
    except StorageError as exc:
        if "no interval" in str(exc):
            raise ApiProblem("not-found", str(exc)) from None
        raise ApiProblem("conflict", "another edit of this interval was stored at once") from None
    rows, _ = api_queries.series(
        engine, meter_id, cid, body.start, body.start + timedelta(seconds=1), version="all"
    )
    found = [r for r in rows if r.version == version]
    if not found:  # pragma: no cover - the row was just stored
        raise ApiProblem("conflict", "the edit was stored but cannot be read back")
    return interval_out(found[0])
