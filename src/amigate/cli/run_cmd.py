"""``amigate run``: the service, with its HTTP API, in one process."""

from __future__ import annotations

import argparse
import logging

from amigate.cli import Commands
from amigate.config import load_settings
from amigate.storage import make_engine, require_current, upgrade
from amigate.storage.engine import mask

log = logging.getLogger("amigate.run")


def register(commands: Commands) -> None:
    """Add ``run``."""
    run = commands.top.add_parser("run", help="run the service (HTTP API on api_host:api_port)")
    run.add_argument("--host", help="listen address (default: setting api_host)")
    run.add_argument("--port", type=int, help="listen port (default: setting api_port)")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from amigate.api import create_app

    settings = load_settings(args.config)
    url = settings.database_url.get_secret_value()
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        upgrade(engine)  # the embedded default sets itself up
    else:
        require_current(engine)  # production schemas move only by `amigate db upgrade`
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    log.info("database %s; API on http://%s:%d (health: /healthz)", mask(url), host, port)
    app = create_app(settings, engine)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
    engine.dispose()
    return 0
