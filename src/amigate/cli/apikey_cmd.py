"""``amigate apikey create|list|revoke``: the API keys of the billing API.

A key's secret is printed once, at creation; only its SHA-256 hash is stored,
so a lost key is revoked and replaced, never recovered.
"""

from __future__ import annotations

import argparse
import json

from amigate.cli import Commands
from amigate.cli.meters_cmd import store_from_args
from amigate.storage.api_keys import SCOPES, ApiKey, ApiKeys


def register(commands: Commands) -> None:
    """Add the ``apikey`` commands."""
    sub = commands.top.add_parser("apikey", help="API keys of the HTTP API").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = sub.add_parser("create", help="create a key and print its secret (shown once)")
    create.add_argument("--name", required=True, help="who or what uses the key (1..64 chars)")
    create.add_argument(
        "--scope", action="append", required=True, choices=SCOPES, dest="scopes",
        help="a scope; repeat for several (admin implies all the others)",
    )  # fmt: skip
    create.add_argument("--json", action="store_true", help="print the key as JSON")
    create.set_defaults(handler=_create)
    show = sub.add_parser("list", help="list the keys (never their secrets)")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.set_defaults(handler=_list)
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key", help="the key's id or prefix (see `apikey list`)")
    revoke.set_defaults(handler=_revoke)


def _keys(args: argparse.Namespace) -> ApiKeys:
    return ApiKeys(store_from_args(args).engine)


def _row(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
        "created_at": key.created_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }  # fmt: skip


def _create(args: argparse.Namespace) -> int:
    keys = _keys(args)
    try:
        key, secret = keys.create(args.name, args.scopes)
    finally:
        keys.engine.dispose()
    if args.json:
        print(json.dumps({**_row(key), "key": secret}))  # noqa: T201
    else:
        print(f"key {key.id} ({key.name}, scopes {','.join(key.scopes)}) created:")  # noqa: T201
        print(secret)  # noqa: T201
        print("store it now: it is not shown again")  # noqa: T201
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = _keys(args)
    try:
        rows = [_row(k) for k in keys.list()]
    finally:
        keys.engine.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))  # noqa: T201
        return 0
    if not rows:
        print("no API keys")  # noqa: T201
        return 0
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        scopes = ",".join(r["scopes"])  # type: ignore[arg-type]
        print(f"{r['id']}  {r['prefix']}  {r['name']}  {scopes}  {state}")  # noqa: T201
    return 0


def _revoke(args: argparse.Namespace) -> int:
    keys = _keys(args)
    try:
        key = keys.revoke(args.key)
    finally:
        keys.engine.dispose()
    print(f"key {key.id} ({key.name}) revoked")  # noqa: T201
    return 0
