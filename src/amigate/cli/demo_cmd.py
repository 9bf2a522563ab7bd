"""``amigate demo``: a simulated fleet of 200 meters and the service reading it."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from amigate.cli import Commands
from amigate.config import Settings, load_settings


def register(commands: Commands) -> None:
    """Add ``demo``."""
    demo = commands.top.add_parser(
        "demo", help="simulated meters (DL/T 645 on TCP and a virtual serial bus, Modbus TCP) "
        "and the service reading them, on SQLite",
        description="Start the simulated fleet of a scenario in simulators/ (default "
        "demo-fleet: 201 meters, some faulty), write its fleet file, and run the service "
        "with its API on it until Ctrl-C.",
    )  # fmt: skip
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    demo.add_argument("--meters", type=int, help="about this many meters (default: all)")
    demo.add_argument("--scenario", default="demo-fleet", help="scenario file or shipped name")
    demo.add_argument("--interval", type=int, default=1, help="read interval, minutes (1)")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="time-lapse: simulated time runs this many times faster (1)")
    demo.add_argument("--db", type=Path, default=Path("amigate-demo.db"),
                      help="SQLite file (default ./amigate-demo.db, recreated on start)")
    demo.add_argument("--dir", type=Path, default=Path("amigate-demo"),
                      help="where the fleet file is written (default ./amigate-demo)")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from amigate.demo import DemoPlan, run_demo
    from amigate.meter_models import load_models

    if args.meters is not None and args.meters < 1:
        from amigate.errors import ConfigError

        raise ConfigError("--meters must be at least 1")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # dead meters are expected here
    base = load_settings(args.config)

    def settings(**overrides: Any) -> Settings:
        return load_settings(args.config, **overrides)

    plan = DemoPlan(
        scenario=args.scenario, meters=args.meters, folder=args.dir, database=args.db,
        host=args.host, port=args.port, interval_minutes=args.interval, speed=args.speed,
    )  # fmt: skip
    asyncio.run(run_demo(plan, settings, load_models(base.drivers_dirs), _say))
    return 0


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201
