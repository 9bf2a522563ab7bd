"""``amigate db upgrade|current|check``: the schema, owned by Alembic."""

from __future__ import annotations

import argparse

from amigate.cli import Commands
from amigate.config import load_settings
from amigate.storage import current_revision, head_revision, make_engine, timescaledb_license
from amigate.storage.engine import mask
from amigate.storage.migrate import check, upgrade


def register(commands: Commands) -> None:
    """Add the ``db`` commands."""
    sub = commands.top.add_parser("db", help="database schema").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    sub.add_parser("upgrade", help="migrate the schema to the newest revision").set_defaults(
        handler=_upgrade
    )
    sub.add_parser("current", help="print the schema revision of the database").set_defaults(
        handler=_current
    )
    sub.add_parser("check", help="verify that the schema matches this version").set_defaults(
        handler=_check
    )


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    return make_engine(load_settings(args.config).database_url.get_secret_value())


def _upgrade(args: argparse.Namespace) -> int:
    engine = _engine(args)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    where = mask(engine.url.render_as_string(hide_password=False))
    if before == after:
        print(f"{where}: schema already at {after}")  # noqa: T201
    else:
        print(f"{where}: schema upgraded from {before or 'empty'} to {after}")  # noqa: T201
    lic = timescaledb_license(engine)
    if lic:
        print(f"TimescaleDB license: {lic}")  # noqa: T201
    return 0


def _current(args: argparse.Namespace) -> int:
    engine = _engine(args)
    current, head = current_revision(engine), head_revision(engine)
    state = "head" if current == head else f"behind head {head}"
    print(f"{current or 'empty'} ({state})")  # noqa: T201
    return 0 if current == head else 3


def _check(args: argparse.Namespace) -> int:
    check(_engine(args))
    print("schema and models agree")  # noqa: T201
    return 0
