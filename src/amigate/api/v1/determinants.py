"""Billing determinants: one meter (``GET``) or up to 1,000 meters in one request (``POST``)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from amigate.api.v1 import fastjson
from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.meters import channel_of
from amigate.api.v1.pagination import check_range
from amigate.api.v1.reads import batch_read, bounded_read
from amigate.api.v1.schemas import (
    BoundaryReadOut,
    Channel,
    DeterminantBatch,
    DeterminantList,
    DeterminantOut,
    MeterId,
    TouOut,
    energy,
    exact,
)
from amigate.billing.determinants import (
    BoundaryRead,
    Determinant,
    Totals,
    accumulate,
    boundary_window,
    finish,
)
from amigate.billing.totals import fixed_offset, period_ranges
from amigate.storage import api_queries, billing_queries, day_totals
from amigate.storage.anomaly_queries import open_anomalies
from amigate.storage.api_queries import ReadRow
from amigate.storage.engine import one_connection
from amigate.tou import TouClassifier

router = APIRouter(tags=["billing"], dependencies=[Depends(require("billing"))])
_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "one row per meter"},
}  # fmt: skip


class Computed(NamedTuple):
    """The determinant of one requested meter, or None for an unknown meter, and the
    meter's multiplier as the API writes it."""

    meter_id: int
    determinant: Determinant | None
    multiplier: str | None


def determinants(
    request: Request, meter_ids: list[int], channel: str, start: datetime, end: datetime,
    *, unknown_is_404: bool = False,
) -> list[Computed]:  # fmt: skip
    """Compute the determinants of ``meter_ids`` (in that order) over ``[start, end)``.

    Raises:
        ApiProblem: ``not-found`` for an unknown meter when ``unknown_is_404``.
    """
    check_range(start, end, request.app.state.settings.api_max_range_days)
    with one_connection(request.app.state.engine):  # one checkout, and on SQLite one snapshot
        return _determinants(request, meter_ids, channel, start, end, unknown_is_404)


def _determinants(
    request: Request, meter_ids: list[int], channel: str, start: datetime, end: datetime,
    unknown_is_404: bool,
) -> list[Computed]:  # fmt: skip
    settings = request.app.state.settings
    engine = request.app.state.engine
    classifier: TouClassifier = request.app.state.tou
    interval_s = int(settings.interval.total_seconds())
    meters = api_queries.existing_meters(engine, meter_ids)
    known = [m for m in dict.fromkeys(meter_ids) if m in meters]
    if unknown_is_404 and len(known) < len(set(meter_ids)):
        raise ApiProblem("not-found", f"no meter {min(set(meter_ids) - set(known))}")
    cid = channel_of(request, channel)
    totals: dict[int, Totals] = {}
    offset = fixed_offset(classifier.zone, start, end)
    if cid and known and offset is not None:  # added up in the database
        totals = _database_totals(engine, known, cid, start, end, offset, classifier, interval_s)
        known = [m for m in known if m not in totals]
    series = api_queries.batch_series(engine, known, cid, start, end) if cid and known else {}
    everyone = [m for m in dict.fromkeys(meter_ids) if m in meters]
    reads: list[dict[int, ReadRow]] = [{}, {}]
    if cid and everyone:
        reads = _boundary_reads(engine, everyone, cid, (start, end), interval_s,
                                settings.api_max_range_days)  # fmt: skip
    anomalies = open_anomalies(engine, everyone, start, end) if everyone else {}
    out = []
    for meter_id in meter_ids:
        row = meters.get(meter_id)
        if row is None:
            out.append(Computed(meter_id, None, None))
            continue
        multiplier = row.ct_ratio * row.pt_ratio
        found = totals.get(meter_id)
        if found is None:
            found = accumulate(
                ((r.ts, r.duration_s, r.value, r.quality) for r in series.get(meter_id, ())),
                end=end, classifier=classifier, interval_s=interval_s,
            )  # fmt: skip
        result = finish(
            meter_id=meter_id, start=start, end=end, totals=found,
            start_read=_boundary(reads[0].get(meter_id)),
            end_read=_boundary(reads[1].get(meter_id)), multiplier=multiplier,
            interval_s=interval_s, anomaly_ids=anomalies.get(meter_id),
        )  # fmt: skip
        out.append(Computed(meter_id, result, exact(multiplier)))
    return out


def _database_totals(
    engine: Engine, ids: list[int], cid: int, start: datetime, end: datetime, offset: int,
    classifier: TouClassifier, interval_s: int,
) -> dict[int, Totals]:  # fmt: skip
    """Totals of the meters without interval versions in the period: from day totals where
    every day has them, else added up from the intervals. Meters with versions are left out
    (their latest versions are summed from the series)."""
    names = classifier.names
    index = {name: i for i, name in enumerate(names)}
    ranges = period_ranges(classifier)
    holiday, days, weekends = classifier.special_days(start, end)
    special: dict[str, Any] = {
        "holidays": [(d - date(1970, 1, 1)).days for d in days], "weekends": weekends,
        "holiday_period": None if holiday is None else index[holiday],
    }  # fmt: skip
    covered, groups = day_totals.read_groups(
        engine, ids, cid, start, end, ranges=ranges, offset_s=offset, interval_s=interval_s,
        **special,
    )  # fmt: skip
    rest = [m for m in ids if m not in covered]  # days with versions are never totalled
    versioned = billing_queries.versioned_meters(engine, rest, cid, start, end) if rest else set()
    plain = [m for m in rest if m not in versioned]
    if plain:
        groups += billing_queries.period_groups(
            engine, plain, cid, start, end, offset_s=offset, ranges=ranges,
            interval_s=interval_s, **special,
        )  # fmt: skip
    out = {m: Totals.empty(classifier) for m in ids if m not in versioned}
    for g in groups:
        t = out[g.meter_id]
        total = t.tou[names[g.period]]
        total.energy += g.energy
        total.intervals += g.intervals
        t.consumption += g.energy
        t.intervals += g.intervals
        t.missing += g.missing
        t.estimated_intervals += g.estimated
        t.estimated_energy += g.estimated_energy
        t.covered_s += g.covered_s
        if g.peak is not None and (t.peak is None or g.peak > t.peak or (
            g.peak == t.peak and g.peak_at is not None and t.peak_at is not None
            and g.peak_at < t.peak_at
        )):  # fmt: skip
            t.peak, t.peak_at = g.peak, g.peak_at
    return out


def _boundary_reads(
    engine: Engine, ids: list[int], cid: int, boundaries: tuple[datetime, datetime],
    interval_s: int, max_days: int,
) -> list[dict[int, ReadRow]]:  # fmt: skip
    """The read standing for each boundary, per meter: the first in its window (both
    boundaries in one statement), else the last before it."""
    windows = [boundary_window(at, interval_s) for at in boundaries]
    reads = api_queries.first_reads_in_each(engine, ids, cid, windows)
    for at, found in zip(boundaries, reads, strict=True):
        missing = [m for m in ids if m not in found]
        if missing:
            found |= api_queries.reads_at_or_before(
                engine, missing, cid, at, at - timedelta(days=max_days)
            )
    return reads


def _boundary(row: ReadRow | None) -> BoundaryRead | None:
    return None if row is None else BoundaryRead(row.read_at, row.value)


def as_model(
    c: Computed, channel: str, start: datetime, end: datetime, classifier: TouClassifier
) -> DeterminantOut:
    """The documented model of a computed determinant."""
    d = c.determinant
    if d is None:
        return DeterminantOut(
            meter_id=c.meter_id, channel=channel, start=start, end=end, billable=False,
            reasons=["unknown_meter"], start_read=None, end_read=None, multiplier=None,
            consumption=energy(0), register_delta=None, difference=None,
            tou=[TouOut(period=n, energy=energy(0), intervals=0) for n in classifier.names],
            max_demand=None, max_demand_at=None, intervals=0, missing_intervals=0,
            estimated_intervals=0, estimated_energy=energy(0), completeness=0.0,
            open_anomalies=[],
        )  # fmt: skip
    return DeterminantOut(
        meter_id=d.meter_id, channel=channel, start=d.start, end=d.end, billable=d.billable,
        reasons=d.reasons,
        start_read=None if d.start_read is None
        else BoundaryReadOut(read_at=d.start_read.read_at, value=energy(d.start_read.value)),
        end_read=None if d.end_read is None
        else BoundaryReadOut(read_at=d.end_read.read_at, value=energy(d.end_read.value)),
        multiplier=c.multiplier, consumption=energy(d.consumption),
        register_delta=None if d.register_delta is None else exact(d.register_delta.scaleb(-6)),
        difference=None if d.difference is None else exact(d.difference.scaleb(-6)),
        tou=[TouOut(period=name, energy=energy(t.energy), intervals=t.intervals)
             for name, t in d.tou.items()],
        max_demand=None if d.max_demand is None else exact(d.max_demand.scaleb(-6)),
        max_demand_at=d.max_demand_at, intervals=d.intervals,
        missing_intervals=d.missing_intervals, estimated_intervals=d.estimated_intervals,
        estimated_energy=energy(d.estimated_energy), completeness=round(d.completeness, 6),
        open_anomalies=d.anomaly_ids,
    )  # fmt: skip


def as_json(
    c: Computed, channel: str, start: datetime, end: datetime, classifier: TouClassifier
) -> str:
    """The JSON text of :func:`as_model`, written directly for known meters (see fastjson)."""
    if c.determinant is None:
        return as_model(c, channel, start, end, classifier).model_dump_json()
    return fastjson.determinant(c.determinant, channel, c.multiplier)


Start = Annotated[datetime, Query(description="billing period start (with offset)")]
End = Annotated[datetime, Query(description="billing period end, excluded (with offset)")]


@router.get(
    "/meters/{meter_id}/determinants", response_model=DeterminantOut,
    summary="Billing determinants of one meter", responses=problem_responses(404),
)  # fmt: skip
async def meter_determinants(
    request: Request, meter_id: MeterId, start: Start, end: End, channel: Channel = "1.8.0"
) -> Response:
    """Start and end register reads, consumption (total and per time-of-use period), maximum
    demand, estimated intervals, completeness and open anomalies of one billing period.
    ``billable`` is false, with ``reasons``, when the period should not be billed as is; the
    consumption equals the register delta × multiplier exactly unless register_mismatch is
    among the reasons."""
    return await bounded_read(request, _meter_determinant, request, meter_id, channel, start, end)


def _meter_determinant(
    request: Request, meter_id: int, channel: str, start: datetime, end: datetime
) -> Response:
    found = determinants(request, [meter_id], channel, start, end, unknown_is_404=True)[0]
    text = as_json(found, channel, start, end, request.app.state.tou)
    return Response(text, media_type="application/json")


@router.post(
    "/determinants", response_model=DeterminantList,
    summary="Billing determinants of up to 1,000 meters", responses=problem_responses(413),
)  # fmt: skip
async def batch_determinants(request: Request, body: DeterminantBatch) -> Response:
    """The determinants of each meter of the batch, in the order given; an unknown meter is
    listed with ``reasons: [unknown_meter]``."""
    return await batch_read(request, _batch_determinants, request, body)


def _batch_determinants(request: Request, body: DeterminantBatch) -> Response:
    found = determinants(request, body.meter_ids, body.channel, body.start, body.end)
    tou = request.app.state.tou
    items = ",".join(as_json(c, body.channel, body.start, body.end, tou) for c in found)
    return Response(f'{{"items":[{items}]}}', media_type="application/json")


@router.post(
    "/determinants.csv", summary="Billing determinants of up to 1,000 meters as CSV",
    response_class=Response, responses={**_CSV, **problem_responses(413)},
)  # fmt: skip
async def batch_determinants_csv(request: Request, body: DeterminantBatch) -> Response:
    """The batch as CSV: one row per meter, one column per time-of-use period."""
    return await batch_read(request, _batch_csv, request, body)


def _batch_csv(request: Request, body: DeterminantBatch) -> Response:
    classifier = request.app.state.tou
    items = [as_model(c, body.channel, body.start, body.end, classifier)
             for c in determinants(request, body.meter_ids, body.channel, body.start, body.end)]
    periods = list(classifier.names)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([
        "meter_id", "channel", "start", "end", "billable", "reasons", "start_read", "end_read",
        "multiplier", "consumption", "register_delta", "difference",
        *[f"tou_{p}" for p in periods], "max_demand", "max_demand_at", "intervals",
        "missing_intervals", "estimated_intervals", "estimated_energy", "completeness",
        "open_anomalies",
    ])  # fmt: skip
    for d in items:
        tou = {t.period: t.energy for t in d.tou}
        writer.writerow([
            d.meter_id, d.channel, d.start.isoformat(), d.end.isoformat(), d.billable,
            " ".join(d.reasons), d.start_read.value if d.start_read else "",
            d.end_read.value if d.end_read else "", d.multiplier or "", d.consumption,
            d.register_delta or "", d.difference or "", *[tou.get(p, "") for p in periods],
            d.max_demand or "", d.max_demand_at.isoformat() if d.max_demand_at else "",
            d.intervals, d.missing_intervals, d.estimated_intervals, d.estimated_energy,
            d.completeness, " ".join(str(a) for a in d.open_anomalies),
        ])  # fmt: skip
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="determinants.csv"'},
    )
