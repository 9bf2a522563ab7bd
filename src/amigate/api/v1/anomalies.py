"""``/v1/anomalies``: the anomaly list and its lifecycle (acknowledge, resolve)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from amigate.api.v1.auth import require
from amigate.api.v1.errors import ApiProblem, problem_responses
from amigate.api.v1.pagination import (
    Cursor,
    Limit,
    Page,
    check_time,
    cursor_int,
    decode_cursor,
    encode_cursor,
)
from amigate.api.v1.schemas import AnomalyOut, SafeText, TransitionIn
from amigate.errors import AnomalyStateError, StorageError, StorageUnavailable
from amigate.storage import anomaly_queries, anomaly_store
from amigate.storage.anomaly_queries import AnomalyFilter
from amigate.storage.api_keys import ApiKey
from amigate.storage.models import AnomalyRow

router = APIRouter(tags=["anomalies"])
AnomalyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the anomaly's id")]
Text = Annotated[str | None, Query(max_length=128, pattern=SafeText)]


def anomaly_out(row: AnomalyRow) -> AnomalyOut:
    """The API view of a stored anomaly."""
    return AnomalyOut(
        id=row.id, kind=row.kind, severity=row.severity, status=row.status,
        meter_id=row.meter_id, transformer_area=row.transformer_area, start=row.start_at,
        end=row.end_at, evidence=row.evidence or {}, created_at=row.created_at,
        updated_at=row.updated_at, acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at, resolved_by=row.resolved_by,
        resolved_at=row.resolved_at, comment=row.comment,
    )  # fmt: skip


@router.get(
    "/anomalies", response_model=Page[AnomalyOut], summary="List anomalies",
    dependencies=[Depends(require("read"))], responses=problem_responses(400),
)  # fmt: skip
def list_anomalies(
    request: Request,
    kind: Text = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    meter_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    area: Text = None,
    start: Annotated[datetime | None, Query(description="overlapping from (with offset)")] = None,
    end: Annotated[datetime | None, Query(description="overlapping until (with offset)")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AnomalyOut]:
    """Anomalies by id, filtered by kind, severity, status, meter, transformer area (the area's
    own anomalies and its meters') and a time range they overlap."""
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            check_time(name, value)
    if start is not None and end is not None and end <= start:
        raise ApiProblem("validation-error", "end must be after start")
    key = decode_cursor("anomalies", cursor)
    after = None if key is None else cursor_int(key[0] if key else None)
    filters = AnomalyFilter(kind=kind, severity=severity, status=status, meter_id=meter_id,
                            area=area, start=start, end=end)  # fmt: skip
    rows = anomaly_queries.anomalies_page(
        request.app.state.engine, filters, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[AnomalyOut](
        items=[anomaly_out(r) for r in rows],
        next_cursor=encode_cursor("anomalies", [rows[-1].id]) if more else None,
    )


@router.get(
    "/anomalies/{anomaly_id}", response_model=AnomalyOut, summary="One anomaly",
    dependencies=[Depends(require("read"))], responses=problem_responses(404),
)  # fmt: skip
def get_anomaly(request: Request, anomaly_id: AnomalyId) -> AnomalyOut:
    """One anomaly with its evidence and lifecycle."""
    row = anomaly_queries.anomaly(request.app.state.engine, anomaly_id)
    if row is None:
        raise ApiProblem("not-found", f"no anomaly {anomaly_id}")
    return anomaly_out(row)


def _transition(
    request: Request, anomaly_id: int, action: str, body: TransitionIn, key: ApiKey
) -> AnomalyOut:
    step = anomaly_store.acknowledge if action == "acknowledge" else anomaly_store.resolve
    try:
        row = step(request.app.state.engine, anomaly_id, by=f"key:{key.name}",
                   comment=body.comment)  # fmt: skip
    except AnomalyStateError as exc:
        raise ApiProblem("conflict", str(exc)) from None
    except StorageUnavailable:
        raise
    except StorageError as exc:
        raise ApiProblem("not-found", str(exc)) from None
    return anomaly_out(row)


@router.post(
    "/anomalies/{anomaly_id}/acknowledge", response_model=AnomalyOut,
    summary="Acknowledge an open anomaly", responses=problem_responses(404, 409, 413),
)  # fmt: skip
def acknowledge(
    request: Request, anomaly_id: AnomalyId, body: TransitionIn,
    key: Annotated[ApiKey, Depends(require("operate"))],
) -> AnomalyOut:  # fmt: skip
    """open → acknowledged, recording who (the key's name), when and the comment; 409 from any
    other status."""
    return _transition(request, anomaly_id, "acknowledge", body, key)


@router.post(
    "/anomalies/{anomaly_id}/resolve", response_model=AnomalyOut,
    summary="Resolve an anomaly", responses=problem_responses(404, 409, 413),
)  # fmt: skip
def resolve(
    request: Request, anomaly_id: AnomalyId, body: TransitionIn,
    key: Annotated[ApiKey, Depends(require("operate"))],
) -> AnomalyOut:  # fmt: skip
    """open or acknowledged → resolved, recording who, when and the comment; 409 when already
    resolved. A resolved anomaly no longer blocks billing."""
    return _transition(request, anomaly_id, "resolve", body, key)
