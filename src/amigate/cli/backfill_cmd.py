"""``amigate backfill status``: how far backfill from meter memory has got, per meter.

Read from the database, so it works whether or not ``amigate run`` is running:
for every meter whose model keeps a load profile, the gaps still standing as a
span (``pending``: within the meter's memory, backfill will read them;
``expired``: older than the meter's memory, they stay a span), the intervals
those gaps cover, and the intervals already filled from the meter's records.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any

from amigate.cli import Commands
from amigate.cli.meters_cmd import print_table, store_from_args
from amigate.config import load_settings
from amigate.domain import MeterStatus, Protocol
from amigate.meter_models import PointKind, load_models
from amigate.readers import load_profile_channels
from amigate.storage.gap_queries import backfilled_counts, open_spans

_COLUMNS = ("id", "bus", "address", "pending_gaps", "pending_intervals", "oldest_gap",
            "expired_gaps", "backfilled")  # fmt: skip


def register(commands: Commands) -> None:
    """Add the ``backfill`` commands."""
    sub = commands.top.add_parser(
        "backfill", help="backfill of gaps from meter memory"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    status = sub.add_parser("status", help="gaps still to fill and intervals filled, per meter")
    status.add_argument("--bus", help="only this bus")
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    status.add_argument("--at", type=_aware, help="as of this ISO time with offset (default now)")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from amigate.service import TimeBase

    settings = load_settings(args.config)
    models = load_models(settings.drivers_dirs)
    now = args.at or TimeBase(settings.time_scale, origin=settings.time_origin).now()
    minutes = {"": settings.interval_minutes}
    if settings.fleet_file is not None:
        from amigate.fleet import load_fleet

        fleet = load_fleet(settings.fleet_file, models)
        minutes.update({b.name: b.plan.interval_minutes for b in fleet.buses})
    store = store_from_args(args)
    try:
        rows = _rows(store, models, now, args.bus, minutes)
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))  # noqa: T201
    elif not rows:
        print("no meters with a load profile")  # noqa: T201
    else:
        print_table(rows, _COLUMNS)
        pending = sum(r["pending_intervals"] for r in rows)
        print(f"{pending} interval(s) waiting for backfill")  # noqa: T201
    return 0


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. +08:00")
    return value


def _rows(
    store: Any, models: Any, now: datetime, bus: str | None, minutes: dict[str, int]
) -> list[dict[str, Any]]:
    meters = {}
    for meter in store.meters():
        model = models.get(meter.model)
        if (meter.id is None or model is None or meter.protocol is Protocol.MODBUS
                or meter.status is MeterStatus.RETIRED or (bus and meter.bus != bus)):  # fmt: skip
            continue
        point = next((p for p in model.points if p.kind is PointKind.LOAD_PROFILE), None)
        if point is None or model.memory.load_profile_days <= 0:
            continue
        meters[meter.id] = (meter, timedelta(days=model.memory.load_profile_days), point)
    if not meters:
        return []
    oldest = now - max(depth for _, depth, _ in meters.values()) - timedelta(days=366)
    spans = open_spans(store.engine, list(meters), oldest)
    filled = backfilled_counts(store.engine, oldest)
    rows = []
    for meter_id, (meter, depth, point) in sorted(meters.items()):
        channels = load_profile_channels(point)
        mine = [s for s in spans if s.meter_id == meter_id and s.channel in channels]
        pending = [s for s in mine if s.start >= now - depth]
        step = timedelta(minutes=minutes.get(meter.bus, minutes[""]))
        rows.append({
            "id": meter_id, "bus": meter.bus, "address": meter.address,
            "pending_gaps": len(pending),
            "pending_intervals": sum((s.end - s.start) // step for s in pending),
            "oldest_gap": min((s.start for s in pending), default=None),
            "expired_gaps": len(mine) - len(pending), "backfilled": filled.get(meter_id, 0),
        })  # fmt: skip
    for row in rows:
        if row["oldest_gap"] is not None:
            row["oldest_gap"] = row["oldest_gap"].isoformat()
    return rows

