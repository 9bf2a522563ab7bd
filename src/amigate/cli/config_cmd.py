"""``amigate config show``: the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

from amigate.cli import Commands
from amigate.config import effective_settings, load_settings


def register(commands: Commands) -> None:
    """Add ``config show``."""
    sub = commands.top.add_parser("config", help="inspect settings").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    show = sub.add_parser("show", help="print the effective settings (secrets masked)")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(json.dumps(effective_settings(settings), indent=2))  # noqa: T201
    return 0
