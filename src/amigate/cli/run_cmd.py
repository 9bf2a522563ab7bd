"""``amigate run``: the service (HTTP API and bus workers) in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from amigate.cli import Commands
from amigate.config import Settings, load_settings
from amigate.errors import StorageUnavailable
from amigate.memory import bound_allocator
from amigate.storage import make_engine, require_current, upgrade
from amigate.storage.engine import check_connection, mask

log = logging.getLogger("amigate.run")


def register(commands: Commands) -> None:
    """Add ``run``."""
    run = commands.top.add_parser(
        "run", help="run the service: bus workers of the fleet and the HTTP API",
        description="Read every bus of the fleet file concurrently and serve the API "
        "(/healthz, /readyz, /metrics). Without a fleet: the API only. "
        "SIGINT or SIGTERM stops it gracefully.",
    )  # fmt: skip
    run.add_argument("--fleet", type=Path, metavar="FILE", help="fleet file (setting fleet_file)")
    run.add_argument("--host", help="listen address (default: setting api_host)")
    run.add_argument("--port", type=int, help="listen port (default: setting api_port)")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = {"fleet_file": args.fleet} if args.fleet else {}
    settings = load_settings(args.config, **overrides)
    serve(settings, host=args.host or settings.api_host, port=args.port or settings.api_port)
    return 0


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the service with ``settings`` until SIGINT or SIGTERM."""
    from amigate.fleet import load_fleet
    from amigate.meter_models import load_models
    from amigate.service import Service
    from amigate.storage import Store

    models = load_models(settings.drivers_dirs)
    fleet = load_fleet(settings.fleet_file, models) if settings.fleet_file else None
    url = settings.database_url.get_secret_value()
    bound_allocator()
    cache_kib = settings.sqlite_cache_mb * 1024
    engine = make_engine(url, check=False, sqlite_cache_kib=cache_kib, sqlite_lean=True)
    try:
        try:
            check_connection(engine)
            if engine.dialect.name == "sqlite":
                upgrade(engine)  # the embedded default sets itself up
            else:
                require_current(engine)  # production schemas move only by `amigate db upgrade`
        except StorageUnavailable as exc:
            if fleet is None:
                raise
            log.error("database unavailable at start-up: %s; collecting into the spools", exc)
        buses = (
            f"{len(fleet.buses)} bus(es), {len(fleet.meters)} meter(s) from {fleet.path}"
            if (fleet)
            else "no fleet (API only)"
        )
        log.info("database %s; %s; API on http://%s:%d (/healthz, /readyz, /metrics)",
                 mask(url), buses, host, port)  # fmt: skip
        service = Service(settings, Store(engine), fleet=fleet, models=models, host=host, port=port)
        asyncio.run(service.run())
    finally:
        engine.dispose()

