"""``amigate frame decode HEX``: decode one captured DL/T 645 frame to JSON."""

from __future__ import annotations

import argparse
import json
import sys

from amigate.cli import Commands
from amigate.errors import FrameError


def register(commands: Commands) -> None:
    """Add ``frame decode``."""
    sub = commands.top.add_parser("frame", help="decode captured frames").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    decode = sub.add_parser(
        "decode", help="decode one DL/T 645 frame given as hex (spaces and FE preambles allowed)"
    )
    decode.add_argument("hex", nargs="+", help="the frame bytes in hex, e.g. 'FE FE 68 ... 16'")
    decode.set_defaults(handler=_decode)


def _decode(args: argparse.Namespace) -> int:
    from amigate.codecs import describe_frame

    text = "".join(args.hex).replace(" ", "").replace(":", "")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        print(f"amigate: error: not hexadecimal bytes: {' '.join(args.hex)!r}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        description = describe_frame(raw)
    except FrameError as exc:
        print(f"amigate: error: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(json.dumps(description, indent=2, ensure_ascii=False))  # noqa: T201
    return 0
