"""Queries that resume a collection series after a restart."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from amigate.domain import RegisterRead, Source, from_micro
from amigate.storage.engine import translate_errors
from amigate.storage.models import ChannelRow, RegisterReadRow

__all__ = ["poll_reads_since"]


def poll_reads_since(
    engine: Engine, meter_id: int, since: datetime | None
) -> dict[str, list[RegisterRead]]:
    """The meter's polled register reads taken at or after ``since`` (all if ``None``).

    Returns:
        Reads by channel code, oldest first.

    Raises:
        StorageUnavailable: the database is away.
    """
    t = RegisterReadRow
    query = (
        select(t, ChannelRow.code)
        .join(ChannelRow, ChannelRow.id == t.channel_id)
        .where(t.meter_id == meter_id, t.source == int(Source.POLL))
        .order_by(t.channel_id, t.read_at)
    )
    if since is not None:
        query = query.where(t.read_at >= since)
    out: dict[str, list[RegisterRead]] = {}
    with translate_errors(engine), Session(engine) as session:
        for r, code in session.execute(query):
            out.setdefault(code, []).append(
                RegisterRead(
                    meter_id=r.meter_id,
                    channel=code,
                    read_at=r.read_at,
                    value=from_micro(r.value),
                    collected_at=r.collected_at,
                    source=Source.POLL,
                )
            )
    return out
