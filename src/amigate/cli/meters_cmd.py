"""``amigate meters add|list|remove``: the meters stored in the database.

For fleets too large to write by hand: a meter added here on a bus of the fleet
file is read by ``amigate run`` like the meters in the file. ``remove`` retires a
meter (it is no longer read); its data is never deleted.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from typing import Any

from amigate.cli import Commands
from amigate.config import load_settings
from amigate.domain import Meter, MeterRole, MeterStatus, Protocol
from amigate.errors import ConfigError
from amigate.storage import Store, make_engine, require_current, upgrade

_OPTIONAL = {
    "ct_ratio": "CT ratio (primary/secondary, default 1)",
    "pt_ratio": "PT ratio (default 1)",
    "rated_voltage": "rated voltage in V (default: the model's)",
    "rated_current": "rated current in A (default: the model's)",
    "max_current": "maximum current in A (default: the model's)",
    "timezone": "IANA timezone of the meter clock (default Asia/Shanghai)",
    "transformer_area": "transformer area",
    "service_point": "service point",
}
_COLUMNS = ("id", "bus", "protocol", "address", "model", "ct_ratio", "pt_ratio", "role", "status")


def register(commands: Commands) -> None:
    """Add the ``meters`` commands."""
    sub = commands.top.add_parser("meters", help="meters stored in the database").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    add = sub.add_parser("add", help="store a meter (validated against its model)")
    add.add_argument("--bus", required=True, help="name of the bus it is on (as in the fleet)")
    add.add_argument("--protocol", required=True, choices=[str(p) for p in Protocol])
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--address", help="DL/T 645 address, 12 digits")
    who.add_argument("--unit-id", type=int, help="Modbus unit id, 1..247")
    add.add_argument("--model", required=True, help="meter model id (a file in drivers/)")
    for key, text in _OPTIONAL.items():
        add.add_argument("--" + key.replace("_", "-"), dest=key, help=text)
    add.add_argument("--role", choices=[str(r) for r in MeterRole], default="customer")
    add.add_argument("--json", action="store_true", help="print the stored meter as JSON")
    add.set_defaults(handler=_add)
    show = sub.add_parser("list", help="list the meters")
    show.add_argument("--bus", help="only this bus")
    show.add_argument("--all", action="store_true", help="include retired meters")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(handler=_list)
    remove = sub.add_parser("remove", help="retire a meter (stops reading it; keeps its data)")
    remove.add_argument("id", type=int, help="the meter's id (see `meters list`)")
    remove.set_defaults(handler=_remove)


def store_from_args(args: argparse.Namespace) -> Store:
    """The store of the configured database (the embedded SQLite default is set up)."""
    engine = make_engine(load_settings(args.config).database_url.get_secret_value())
    if engine.dialect.name == "sqlite":
        upgrade(engine)  # the embedded default sets itself up
    else:
        require_current(engine)
    return Store(engine)


def _add(args: argparse.Namespace) -> int:
    from amigate.fleet import parse_meter
    from amigate.meter_models import load_models

    settings = load_settings(args.config)
    protocol = Protocol(args.protocol)
    raw: dict[str, Any] = {"model": args.model, "role": args.role}
    if protocol is Protocol.MODBUS:
        if args.unit_id is None:
            raise ConfigError("a Modbus meter needs --unit-id")
        raw["unit_id"] = args.unit_id
    else:
        if args.address is None:
            raise ConfigError("a DL/T 645 meter needs --address")
        raw["address"] = args.address
    for key in _OPTIONAL:
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    meter = parse_meter(
        raw, bus=args.bus, protocol=protocol, models=load_models(settings.drivers_dirs),
        where="meters add",
    )  # fmt: skip
    store = store_from_args(args)
    try:
        stored = store.add_meter(meter)
    finally:
        store.engine.dispose()
    if args.json:
        print(json.dumps(_row(stored)))  # noqa: T201
    else:
        print(f"meter {stored.id} added: {stored.address} ({stored.model}) on bus {stored.bus}")  # noqa: T201
    return 0


def _list(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        meters = store.meters()
    finally:
        store.engine.dispose()
    rows = [
        _row(m) for m in meters
        if (args.all or m.status is not MeterStatus.RETIRED) and (not args.bus or m.bus == args.bus)
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    if not rows:
        print("no meters")  # noqa: T201
        return 0
    print_table(rows, _COLUMNS)
    return 0


def print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Print ``rows`` as a plain text table of ``columns``."""
    table = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))  # noqa: T201
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())  # noqa: T201


def _remove(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        meter = store.retire_meter(args.id)
    finally:
        store.engine.dispose()
    print(f"meter {meter.id} ({meter.address} on bus {meter.bus}) retired; its data is kept")  # noqa: T201
    return 0


def _row(meter: Meter) -> dict[str, Any]:
    return {
        "id": meter.id, "bus": meter.bus, "protocol": str(meter.protocol),
        "address": meter.address, "model": meter.model, "ct_ratio": _text(meter.ct_ratio),
        "pt_ratio": _text(meter.pt_ratio), "rated_voltage": _text(meter.rated_voltage),
        "rated_current": _text(meter.rated_current), "max_current": _text(meter.max_current),
        "timezone": meter.timezone, "transformer_area": meter.transformer_area,
        "service_point": meter.service_point, "role": str(meter.role),
        "status": str(meter.status),
    }  # fmt: skip


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.normalize():f}"
