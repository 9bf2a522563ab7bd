"""DL/T 645 commands: ``read dlt645``, ``scan dlt645`` and ``sim dlt645``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from amigate.cli import Commands
from amigate.codecs import ADDRESS_WILDCARD, Dlt645Version, ReadResponse, Value
from amigate.drivers.dlt645 import Dlt645Client
from amigate.errors import (
    AmigateError,
    ConfigError,
    DeviceRejected,
    ReadTimeout,
    TransportError,
)
from amigate.transports import SerialParams, Transport, open_transport, parse_url

_VERSIONS = {"2007": Dlt645Version.V2007, "1997": Dlt645Version.V1997}
#: What ``scan`` reads to see whether a meter is there.
_PROBE = {Dlt645Version.V2007: 0x04000401, Dlt645Version.V1997: 0x9010}


def register(commands: Commands) -> None:
    """Add the DL/T 645 commands to the ``amigate`` parser."""
    read = commands.read.add_parser(
        "dlt645",
        help="read data identifiers from one DL/T 645 meter",
        description="Read one or more data identifiers from a DL/T 645 meter.",
    )
    _bus_options(read)
    read.add_argument(
        "--address",
        required=True,
        type=_address,
        help="12-digit meter address; AAAAAAAAAAAA asks the only meter on the bus for its address",
    )
    read.add_argument(
        "--di",
        action="append",
        required=True,
        type=_di,
        metavar="DI",
        help="data identifier in hex (00010000; 1997: 9010); repeat for several",
    )
    read.add_argument("--json", action="store_true", help="print a JSON list")
    read.set_defaults(handler=_read)

    scan = commands.scan.add_parser(
        "dlt645",
        help="find which DL/T 645 meters answer on a bus",
        description="Probe addresses (or, without a list, the only meter) on a DL/T 645 bus.",
    )
    _bus_options(scan, retries=0)
    scan.add_argument(
        "--addresses",
        metavar="FILE",
        type=Path,
        help="one 12-digit address per line, # starts a comment; default: read-address",
    )
    scan.add_argument("--json", action="store_true", help="print a JSON list")
    scan.set_defaults(handler=_scan)

    dlt = commands.sim.add_parser(
        "dlt645",
        help="simulate DL/T 645 meters on a TCP port or a pseudo-terminal",
        description="Serve the buses of a scenario; prints one URL per bus, then serves "
        "until interrupted.",
    )
    dlt.add_argument(
        "--scenario", default="demo", metavar="FILE|NAME", help="scenario file or shipped name"
    )
    where = dlt.add_mutually_exclusive_group()
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve the (first) bus on this port")
    where.add_argument("--pty", action="store_true", help="serve every bus on a pseudo-terminal")
    dlt.add_argument("--wire-time", action="store_true", help="pace replies at the bus's baud rate")
    dlt.set_defaults(handler=_sim)


def _bus_options(parser: argparse.ArgumentParser, *, retries: int = 1) -> None:
    parser.add_argument(
        "--url", required=True, help="serial:///dev/ttyUSB0?baud=2400&parity=E or tcp://HOST:PORT"
    )
    parser.add_argument(
        "--version", dest="protocol_version", choices=sorted(_VERSIONS), default="2007",
        help="DL/T 645 generation (default 2007)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="response timeout (default: from baud and size)"
    )
    parser.add_argument(
        "--baud", type=int, help="bus line speed for timeouts (default: the URL's, or 2400)"
    )
    parser.add_argument(
        "--retries", type=int, default=retries, help=f"retries per request (default {retries})"
    )


def _address(text: str) -> str:
    address = text.strip().upper()
    if len(address) != 12 or any(c not in "0123456789A" for c in address):
        raise argparse.ArgumentTypeError(f"{text!r} is not a 12-digit address")
    return address


def _di(text: str) -> int:
    digits = text.strip().replace(" ", "")
    if len(digits) not in (4, 8):
        raise argparse.ArgumentTypeError(f"{text!r} is not 8 (2007) or 4 (1997) hex digits")
    try:
        return int(digits, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not hexadecimal") from None


def _client(args: argparse.Namespace, transport: Transport) -> Dlt645Client:
    params = parse_url(args.url)
    baud = args.baud or (params.baudrate if isinstance(params, SerialParams) else 2400)
    bits = params.bits_per_char if isinstance(params, SerialParams) else 11
    return Dlt645Client(
        transport,
        version=_VERSIONS[args.protocol_version],
        baud=baud,
        bits_per_char=bits,
        retries=args.retries,
        timeout=args.timeout,
        slack=0.3 if isinstance(params, SerialParams) else 0.5,
    )


def _text(value: Value) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _rows(response: ReadResponse) -> list[dict[str, Any]]:
    rows = [
        {
            "address": response.address,
            "di": response.di_hex,
            "name": v.name,
            "channel": v.channel,
            "value": _text(v.value),
            "unit": v.unit,
        }
        for v in response.values
    ]
    if not rows:  # not in the catalogue: show the raw payload
        rows.append(
            {
                "address": response.address,
                "di": response.di_hex,
                "name": "raw payload (DI not catalogued)",
                "channel": None,
                "value": response.payload.hex().upper(),
                "unit": None,
            }
        )
    return rows


async def _read_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    transport = await open_transport(args.url)
    try:
        client = _client(args, transport)
        address = args.address
        if address == ADDRESS_WILDCARD:
            address = await client.read_address()
        rows: list[dict[str, Any]] = []
        for di in args.di:
            try:
                response = await client.read(address, di)
            except DeviceRejected as exc:
                width = 8 if client.version is Dlt645Version.V2007 else 4
                raise DeviceRejected(
                    f"DI {di:0{width}X}: {exc}", code=exc.code, reasons=exc.reasons
                ) from exc
            rows.extend(_rows(response))
        return rows
    finally:
        await transport.aclose()


def _read(args: argparse.Namespace) -> int:
    rows = asyncio.run(_read_async(args))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))  # noqa: T201
    else:
        for row in rows:
            unit = f" {row['unit']}" if row["unit"] else ""
            print(f"{row['address']} {row['di']} {row['name']}: {row['value']}{unit}")  # noqa: T201
    return 0


def _addresses(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"address list {path}: {exc}") from exc
    out = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if len(text) != 12 or not text.isdigit():
            raise ConfigError(f"address list {path}, line {number}: {text!r} is not 12 digits")
        out.append(text)
    return out


async def _scan_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    targets = _addresses(args.addresses) if args.addresses else None
    transport = await open_transport(args.url)
    try:
        client = _client(args, transport)
        if targets is None:
            try:
                found = await client.read_address()
            except TransportError as exc:
                if not isinstance(exc, ReadTimeout):
                    raise
                return [{"address": ADDRESS_WILDCARD, "answers": False, "detail": str(exc)}]
            except AmigateError as exc:
                return [{"address": ADDRESS_WILDCARD, "answers": False, "detail": str(exc)}]
            return [{"address": found, "answers": True, "detail": "read-address"}]
        results = []
        probe = _PROBE[client.version]
        for address in targets:
            try:
                await client.read(address, probe)
                results.append({"address": address, "answers": True, "detail": "ok"})
            except DeviceRejected as exc:  # an abnormal reply is still an answer
                results.append({"address": address, "answers": True, "detail": str(exc)})
            except TransportError as exc:
                if not isinstance(exc, ReadTimeout):
                    raise  # the bus itself failed: no point probing further
                results.append({"address": address, "answers": False, "detail": "timeout"})
            except AmigateError as exc:
                detail = type(exc).__name__
                results.append({"address": address, "answers": False, "detail": detail})
        return results
    finally:
        await transport.aclose()


def _scan(args: argparse.Namespace) -> int:
    results = asyncio.run(_scan_async(args))
    if args.json:
        print(json.dumps(results))  # noqa: T201
    else:
        for r in results:
            state = "answers" if r["answers"] else "no answer"
            print(f"{r['address']} {state} ({r['detail']})")  # noqa: T201
    answered = sum(r["answers"] for r in results)
    print(f"{answered} of {len(results)} answered", file=sys.stderr)  # noqa: T201
    return 0 if answered else 1


async def _sim_async(args: argparse.Namespace) -> int:
    from amigate.simulators import PtyServer, build_buses, load_scenario, serve_tcp

    scenario = load_scenario(args.scenario)
    buses = build_buses(scenario)
    closers = []
    try:
        for index, bus in enumerate(buses):
            spec = scenario.buses[index]
            bus.wire_time = bus.wire_time or args.wire_time
            if args.pty or spec.listen == "pty":
                pty = PtyServer(bus)
                await pty.start()
                closers.append(pty.aclose)
                url = f"serial://{pty.path}"
            else:
                host, port = _host_port(args.tcp if args.tcp and index == 0 else spec.listen)
                server = await serve_tcp(bus, host, port)
                closers.append(_closer(server))
                bound = server.sockets[0].getsockname()
                url = f"tcp://{bound[0]}:{bound[1]}"
            print(f"{url} {bus.name} {len(bus.meters)} meters", flush=True)  # noqa: T201
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        for close in closers:
            with contextlib.suppress(OSError):
                await close()


def _closer(server: asyncio.Server) -> Any:
    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close


def _host_port(text: str) -> tuple[str, int]:
    target = text.removeprefix("tcp://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address {text!r} must be HOST:PORT (port 0 = any free port)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _sim(args: argparse.Namespace) -> int:
    return asyncio.run(_sim_async(args))
