"""The ``amigate`` command: a thin argparse front over the service, drivers and storage.

Each command module exposes ``register(commands)`` that adds its parsers to the
shared :class:`Commands` groups and sets ``handler`` on each leaf parser. A
handler takes the parsed arguments and returns the process exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from amigate import __version__
from amigate.errors import AmigateError

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Commands:
    """The parser groups a command module can add to."""

    top: argparse._SubParsersAction[argparse.ArgumentParser]
    read: argparse._SubParsersAction[argparse.ArgumentParser]
    scan: argparse._SubParsersAction[argparse.ArgumentParser]
    sim: argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    """Build the complete ``amigate`` argument parser."""
    from amigate.cli import (
        apikey_cmd,
        backfill_cmd,
        config_cmd,
        db_cmd,
        demo_cmd,
        dlt645_cmd,
        frame_cmd,
        meters_cmd,
        modbus_cmd,
        run_cmd,
        vee_cmd,
    )

    parser = argparse.ArgumentParser(prog="amigate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"amigate {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help="settings file (TOML); default ./amigate.toml if present"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    read = top.add_parser("read", help="read one meter").add_subparsers(
        dest="protocol", metavar="PROTOCOL", required=True
    )
    scan = top.add_parser("scan", help="find the meters that answer on a bus").add_subparsers(
        dest="protocol", metavar="PROTOCOL", required=True
    )
    sim = top.add_parser("sim", help="run a simulated fleet of meters").add_subparsers(
        dest="protocol", metavar="PROTOCOL", required=True
    )
    commands = Commands(top=top, read=read, scan=scan, sim=sim)
    for module in (
        config_cmd, db_cmd, run_cmd, demo_cmd, meters_cmd, backfill_cmd, frame_cmd, dlt645_cmd,
        modbus_cmd, apikey_cmd, vee_cmd,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``amigate`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(args)
    except AmigateError as exc:
        # One line an operator can act on; no traceback for errors we anticipated.
        print(f"amigate: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
