"""``amigate vee run|anomalies|ack|resolve``: validation before billing, and its anomalies.

``run`` validates stored data in batch (``--since``, optionally ``--until`` and
``--meter``), estimating closed gaps and computing transformer-area line loss;
running it twice gives the same flags. ``anomalies`` lists what was raised;
``ack`` and ``resolve`` move an anomaly through its lifecycle.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from amigate.cli import Commands
from amigate.config import load_settings
from amigate.domain import AnomalyStatus
from amigate.errors import ConfigError
from amigate.storage import Store, make_engine, require_current, upgrade


def register(commands: Commands) -> None:
    """Add the ``vee`` commands."""
    sub = commands.top.add_parser("vee", help="validation before billing").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    run = sub.add_parser("run", help="validate stored data (rules, estimation, line loss)")
    run.add_argument("--since", required=True, help="start time, ISO 8601 (site time if no zone)")
    run.add_argument("--until", help="end time, ISO 8601 (default: now)")
    run.add_argument("--meter", type=int, action="append", help="only this meter id (repeatable)")
    run.add_argument("--rule", action="append", help="only this rule (repeatable)")
    run.add_argument("--no-estimate", action="store_true", help="do not estimate gaps")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(handler=_run)
    show = sub.add_parser("anomalies", help="list anomalies")
    show.add_argument("--meter", type=int, help="only this meter id")
    show.add_argument("--area", help="only this transformer area")
    show.add_argument("--kind", help="only this kind")
    show.add_argument("--status", choices=[str(s) for s in AnomalyStatus])
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(handler=_anomalies)
    for name, text in (("ack", "acknowledge an anomaly"), ("resolve", "resolve an anomaly")):
        step = sub.add_parser(name, help=text)
        step.add_argument("id", type=int, help="the anomaly's id")
        step.add_argument("--by", required=True, help="who (operator name)")
        step.add_argument("--comment", help="why, or what was done")
        step.set_defaults(handler=_transition, step=name)


def _store(args: argparse.Namespace) -> Store:
    engine = make_engine(load_settings(args.config).database_url.get_secret_value())
    if engine.dialect.name == "sqlite":
        upgrade(engine)
    else:
        require_current(engine)
    return Store(engine)


def _time(value: str, zone: ZoneInfo, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"--{name} {value!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    line = f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} meters"
    print(line, end="" if done < total else "\n", file=sys.stderr, flush=True)  # noqa: T201


def _run(args: argparse.Namespace) -> int:
    from amigate.vee import validate

    settings = load_settings(args.config)
    store = _store(args)
    since = _time(args.since, settings.timezone, "since")
    until = _time(args.until, settings.timezone, "until") if args.until else None
    progress = None if args.no_progress or args.json else _bar
    try:
        report = validate(store, since=since, until=until, meters=args.meter,
                          settings=settings.vee, rules=args.rule, estimate=not args.no_estimate,
                          progress=progress)  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    summary = {
        "run_id": report.run_id, "meters": report.meters, "intervals": report.intervals,
        "anomalies": dict(sorted(report.anomalies.items())), "estimates": report.versions,
        "seconds": round(report.seconds, 3),
        "line_loss": [
            {"area": d.area, "day": datetime.fromtimestamp(d.day_start, settings.timezone)
             .date().isoformat(), "status": d.status, "rate": d.rate,
             "missing_meters": list(d.missing_meters)}
            for d in report.loss_days
        ],
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))  # noqa: T201
        return 0
    print(f"validated {report.intervals} intervals of {report.meters} meters in "  # noqa: T201
          f"{report.seconds:.2f} s ({report.intervals_per_s:,.0f}/s); "
          f"{report.versions} estimates; run {report.run_id}")
    for kind, count in sorted(report.anomalies.items()):
        print(f"  {kind:<28} {count}")  # noqa: T201
    return 0


def _anomalies(args: argparse.Namespace) -> int:
    from amigate.storage.anomaly_store import list_anomalies

    store = _store(args)
    found = list_anomalies(
        store.engine, meter_id=args.meter, transformer_area=args.area, kind=args.kind,
        status=None if args.status is None else AnomalyStatus(args.status),
    )  # fmt: skip
    rows = [
        {"id": a.id, "kind": a.kind, "severity": str(a.severity), "status": str(a.status),
         "meter_id": a.meter_id, "area": a.transformer_area, "subject": a.subject,
         "start": a.start.isoformat(), "end": None if a.end is None else a.end.isoformat(),
         "occurrences": a.occurrences, "evidence": a.evidence}
        for a in found
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2, default=str))  # noqa: T201
        return 0
    for r in rows:
        where = f"meter {r['meter_id']}" if r["meter_id"] is not None else f"area {r['area']}"
        print(f"{r['id']:>6} {r['kind']:<26} {r['severity']:<8} {r['status']:<12} "  # noqa: T201
              f"{where:<16} {r['start']} .. {r['end'] or 'ongoing'}")
    return 0


def _transition(args: argparse.Namespace) -> int:
    from amigate.storage.anomaly_store import acknowledge, resolve

    store = _store(args)
    step = acknowledge if args.step == "ack" else resolve
    step(store.engine, args.id, by=args.by, comment=args.comment)
    print(f"anomaly {args.id}: {'acknowledged' if args.step == 'ack' else 'resolved'}")  # noqa: T201
    return 0
