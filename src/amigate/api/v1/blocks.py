"""``/v1/meters/{id}/intervals/blocks``: an interval series as blocks of back-to-back
intervals that differ only in value.

A meter-month read every interval is one block: its 2,880 values and their attributes
once, about 30 kB of JSON instead of 610 kB as ``IntervalOut`` items. Billing systems
that pull whole fleets take this form; the items stay for those that want each
interval's document.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from amigate.api.v1 import fastjson
from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.intervals import End, Start, series_args
from amigate.api.v1.pagination import (
    Cursor,
    Page,
    SeriesLimit,
    cursor_time,
    decode_cursor,
    encode_cursor,
)
from amigate.api.v1.reads import bounded_read
from amigate.api.v1.schemas import Channel, IntervalBlockOut, MeterId
from amigate.storage import api_queries, plain_series
from amigate.storage.api_queries import SeriesRow
from amigate.storage.plain_series import PlainColumns

router = APIRouter(tags=["intervals"])
_KIND = "interval-blocks"
_AFTER_EVERY_VERSION = 2**31  # a cursor's start is done whatever its version


@router.get(
    "/meters/{meter_id}/intervals/blocks", response_model=Page[IntervalBlockOut],
    summary="Interval series of a meter as blocks of values",
    dependencies=[Depends(require("read"))], responses=problem_responses(400, 404),
)  # fmt: skip
async def interval_blocks(
    request: Request,
    meter_id: MeterId,
    start: Start,
    end: End,
    channel: Channel = "1.8.0",
    version: Annotated[
        Literal["latest", "original"],
        Query(description="latest: what billing sees; original: as collected"),
    ] = "latest",
    limit: SeriesLimit = 10_000,
    cursor: Cursor = None,
) -> Response:
    """The intervals of ``GET /meters/{meter_id}/intervals`` starting in ``[start, end)``,
    grouped: each block holds intervals back to back, of one length, with the same
    quality, version, source, method, reason codes, author, comment and time recorded, and
    lists their values in start order. A page holds at most ``limit`` intervals; a block
    cut by the page's end goes on in the next page's first block."""
    return await bounded_read(
        request, _blocks, request, meter_id, start, end, channel, version, limit, cursor
    )


def _blocks(
    request: Request, meter_id: int, start: datetime, end: datetime, channel: str,
    version: Literal["latest", "original"], limit: int, cursor: str | None,
) -> Response:  # fmt: skip
    cid = series_args(request, meter_id, channel, start, end)
    key = decode_cursor(_KIND, cursor)
    if key is not None and len(key) != 1:
        raise ApiProblem("invalid-cursor", "the cursor was not returned by this list")
    after = None if key is None else cursor_time(key[0])
    if cid is None:
        return Response(fastjson.page([], None), media_type="application/json")
    engine = request.app.state.engine
    plain = plain_series.plain_series(engine, meter_id, cid, start, end,
                                      original=version == "original", after=after,
                                      limit=limit)  # fmt: skip
    last: datetime | None = None
    if plain is not None:
        found, more = plain
        items = plain_blocks(found)
        if more and found.start:
            last = datetime.fromtimestamp(int(found.start[-1]), UTC)
    else:
        rows, more = api_queries.series(
            engine, meter_id, cid, start, end, version=version, limit=limit,
            after=None if after is None else (after, _AFTER_EVERY_VERSION),
        )  # fmt: skip
        items = row_blocks(rows)
        if more and rows:
            last = rows[-1].ts
    next_cursor = None if last is None else encode_cursor(_KIND, [last.isoformat()])
    return Response(fastjson.page(items, next_cursor), media_type="application/json")


def plain_blocks(columns: PlainColumns) -> list[str]:
    """The ``IntervalBlockOut`` documents of version-1 intervals in start order.

    A series read every interval is one block, written without a loop in Python: its
    values' text joined, its attributes once."""
    count = len(columns.start)
    quality, source = columns.quality, columns.source
    if (count and quality.count(quality[0]) == count and source.count(source[0]) == count
            and fastjson.regular_run(columns) is not None):  # fmt: skip
        return [_block(int(columns.start[0]), int(columns.duration_s[0]), columns.value,
                       fastjson.plain_attributes(quality[0], source[0]))]  # fmt: skip
    starts, durations = list(map(int, columns.start)), list(map(int, columns.duration_s))
    kinds = list(zip(columns.duration_s, quality, source, strict=True))
    return [_block(starts[i], durations[i], columns.value[i:j],
                   fastjson.plain_attributes(quality[i], source[i]))
            for i, j in _runs(starts, durations, kinds)]  # fmt: skip


def row_blocks(rows: Sequence[SeriesRow]) -> list[str]:
    """The ``IntervalBlockOut`` documents of interval versions, one per start, in start
    order."""
    starts = [int(r.ts.timestamp()) for r in rows]
    durations = [r.duration_s for r in rows]
    kinds = [(r.duration_s, fastjson.attributes(r)) for r in rows]
    texts = ["n" if r.value is None else str(r.value) for r in rows]
    return [_block(starts[i], durations[i], texts[i:j], kinds[i][1])
            for i, j in _runs(starts, durations, kinds)]  # fmt: skip


def _runs(
    starts: list[int], durations: list[int], kinds: Sequence[Hashable]
) -> Iterator[tuple[int, int]]:
    """``[i, j)`` index ranges of intervals back to back with equal ``kinds``."""
    begin = 0
    for i in range(1, len(starts) + 1):
        if (i == len(starts) or kinds[i] != kinds[begin]
                or starts[i] != starts[i - 1] + durations[i - 1]):  # fmt: skip
            yield begin, i
            begin = i


def _block(first: int, step: int, values: list[str], attributes: str) -> str:
    """One ``IntervalBlockOut`` document; ``values`` as micro-units' text (``n``: none)."""
    start = fastjson.iso(datetime.fromtimestamp(first, UTC))
    end = fastjson.iso(datetime.fromtimestamp(first + step * len(values), UTC))
    return (f'{{"start":"{start}","end":"{end}","interval_s":{step},'
            f'"values":[{fastjson.values(values)}],{attributes}')  # fmt: skip
