"""Modbus commands: ``read modbus``, ``scan modbus`` and ``sim modbus``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from amigate.cli import Commands
from amigate.errors import ConfigError
from amigate.meter_models import MeterModel, load_models

_URLS = (
    "serial:///dev/ttyUSB0?baud=9600&parity=N (RTU on a serial port), "
    "rtu+tcp://HOST:PORT (RTU through a transparent RS-485 gateway) or "
    "modbus+tcp://HOST:PORT (Modbus TCP)"
)


def register(commands: Commands) -> None:
    """Add the Modbus commands to the ``amigate`` parser."""
    read = commands.read.add_parser(
        "modbus",
        help="read every point of one Modbus meter",
        description=f"Read every point of a Modbus meter model. URL: {_URLS}.",
    )
    _bus_options(read, timeout=0.5, retries=1)
    read.add_argument("--unit-id", type=int, required=True, metavar="N", help="device ID 1..247")
    read.add_argument("--model", required=True, help="meter model id (sdm630, em24, ...)")
    read.add_argument("--single", action="store_true", help="one request per point (no blocks)")
    read.add_argument("--json", action="store_true", help="print a JSON list")
    read.set_defaults(handler=_read)

    scan = commands.scan.add_parser(
        "modbus",
        help="find which Modbus IDs answer on a bus and which model each matches",
        description=f"Probe device IDs and match models by plausible voltages. URL: {_URLS}.",
    )
    _bus_options(scan, timeout=0.2, retries=0)
    scan.add_argument("--ids", default="1-247", help="IDs to probe: 1-247, 1,2,5-9 (default 1-247)")
    scan.add_argument("--model", action="append", help="only these models (repeat); default all")
    scan.add_argument("--json", action="store_true", help="print a JSON list")
    scan.set_defaults(handler=_scan)

    sim = commands.sim.add_parser(
        "modbus",
        help="simulate Modbus meters on a TCP port or a pseudo-terminal",
        description="Serve simulated Modbus meters (one bus, several IDs); prints the URL, "
        "then serves until interrupted.",
    )
    sim.add_argument(
        "--meter", action="append", metavar="MODEL:ID",
        help="a meter to simulate (repeat); default one of each Modbus model, IDs 1..N",
    )  # fmt: skip
    where = sim.add_mutually_exclusive_group()
    where.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP (default 127.0.0.1:5020)")
    where.add_argument("--rtu-tcp", metavar="HOST:PORT", help="RTU over TCP, like a gateway")
    where.add_argument("--pty", action="store_true", help="RTU on a pseudo-terminal")
    sim.add_argument("--kw", default="2.0", help="peak load per meter in kW (default 2.0)")
    sim.add_argument(
        "--fault", action="append", default=[], metavar="ID:KIND[:ARG]",
        help="no_reply, exception[:CODE], unsupported:CHANNEL, swapped_words, frozen_counter",
    )  # fmt: skip
    sim.add_argument("--models", type=Path, metavar="DIR", help="extra model definitions")
    sim.set_defaults(handler=_sim)


def _bus_options(parser: argparse.ArgumentParser, *, timeout: float, retries: int) -> None:
    parser.add_argument("--url", required=True, help=_URLS)
    parser.add_argument(
        "--timeout", type=float, default=timeout, metavar="S",
        help=f"seconds to wait for each reply (default {timeout})",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=retries, help=f"retries after a timeout (default {retries})"
    )
    parser.add_argument(
        "--pause", type=float, metavar="S", help="pause when switching device IDs (default 0.02)"
    )
    parser.add_argument("--models", type=Path, metavar="DIR", help="extra model definitions")


def _modbus_models(folder: Path | None) -> dict[str, MeterModel]:
    models = load_models([folder] if folder else [])
    return {k: m for k, m in models.items() if m.modbus is not None}


def _model(args: argparse.Namespace) -> MeterModel:
    models = _modbus_models(args.models)
    if args.model not in models:
        raise ConfigError(f"unknown Modbus model {args.model!r}; known: {', '.join(models)}")
    return models[args.model]


def _quiet_pymodbus(args: argparse.Namespace) -> None:
    # pymodbus logs every unanswered request at ERROR; our own messages say it once.
    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def _read_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    from amigate.drivers.modbus import ModbusBus, ModbusMeter, parse_modbus_url

    model = _model(args)
    target = parse_modbus_url(args.url, baud=model.serial.baud, parity=model.serial.parity)
    async with ModbusBus(target, switch_pause=args.pause) as bus:
        meter = ModbusMeter(bus, model, args.unit_id, timeout=args.timeout, retries=args.retries)
        values = await meter.poll(single=args.single)
    return [
        {
            "channel": v.channel,
            "name": v.name,
            "value": None if v.value is None else str(v.value),
            "unit": v.unit,
            "missing": v.missing,
        }
        for v in values
    ]


def _read(args: argparse.Namespace) -> int:
    _quiet_pymodbus(args)
    rows = asyncio.run(_read_async(args))
    if args.json:
        print(json.dumps(rows))  # noqa: T201
    else:
        for row in rows:
            value = row["value"] if row["value"] is not None else f"-- ({row['missing']})"
            unit = f" {row['unit']}" if row["unit"] and row["value"] is not None else ""
            print(f"{row['channel']:>8} {row['name']:<24} {value}{unit}")  # noqa: T201
    return 0


async def _scan_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    from amigate.drivers.modbus import ModbusBus, parse_modbus_url
    from amigate.drivers.modbus_scan import parse_ids, scan_bus

    try:
        ids = parse_ids(args.ids)
    except ValueError as exc:
        raise ConfigError(f"--ids {args.ids!r}: {exc}") from None
    models = _modbus_models(args.models)
    if args.model:
        unknown = set(args.model) - set(models)
        if unknown:
            raise ConfigError(f"unknown Modbus model(s) {', '.join(sorted(unknown))}")
        models = {k: models[k] for k in args.model}
    async with ModbusBus(parse_modbus_url(args.url), switch_pause=args.pause) as bus:
        results = await scan_bus(bus, models.values(), ids, timeout=args.timeout)
    return [
        {
            "unit_id": r.device_id,
            "answers": r.answers,
            "models": list(r.models),
            "detail": r.detail,
            "readings": r.readings,
        }
        for r in results
        if r.answers
    ]


def _scan(args: argparse.Namespace) -> int:
    _quiet_pymodbus(args)
    found = asyncio.run(_scan_async(args))
    if args.json:
        print(json.dumps(found))  # noqa: T201
    else:
        for r in found:
            models = ", ".join(r["models"]) or "no model matches"
            print(f"{r['unit_id']:>3} {models} ({r['detail']})")  # noqa: T201
    print(f"{len(found)} ID(s) answered", file=sys.stderr)  # noqa: T201
    return 0 if found else 1


def _meter_specs(args: argparse.Namespace, models: dict[str, MeterModel]) -> list[tuple[str, int]]:
    if not args.meter:
        return [(model_id, index) for index, model_id in enumerate(models, start=1)]
    specs = []
    for text in args.meter:
        model_id, _, number = text.rpartition(":")
        if model_id not in models or not number.isdigit():
            raise ConfigError(f"--meter {text!r}: use MODEL:ID with one of {', '.join(models)}")
        specs.append((model_id, int(number)))
    return specs


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {text!r} must be HOST:PORT (port 0 = any free port)")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _sim_async(args: argparse.Namespace) -> int:
    from amigate.simulators.modbus_meter import ModbusSimMeter, apply_fault
    from amigate.simulators.modbus_server import ModbusSimServer
    from amigate.simulators.physics import utc_now

    models = _modbus_models(args.models)
    meters = {
        device_id: ModbusSimMeter.build(
            models[model_id], device_id, clock=utc_now, load={"kw": args.kw}
        )
        for model_id, device_id in _meter_specs(args, models)
    }
    for text in args.fault:
        number, _, rest = text.partition(":")
        kind, _, argument = rest.partition(":")
        if not number.isdigit() or int(number) not in meters:
            raise ConfigError(f"--fault {text!r}: no simulated meter with ID {number!r}")
        apply_fault(meters[int(number)], kind, argument)
    server = ModbusSimServer(meters.values())
    try:
        if args.pty:
            url = await server.serve_pty()
        else:
            host, port = _host_port(args.rtu_tcp or args.tcp or "127.0.0.1:5020")
            url = await server.serve_tcp(host, port, rtu=bool(args.rtu_tcp))
        print(url, flush=True)  # noqa: T201
        for meter in meters.values():
            print(f"  ID {meter.device_id:>3} {meter.model.id}", flush=True)  # noqa: T201
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        with contextlib.suppress(OSError):
            await server.aclose()


def _sim(args: argparse.Namespace) -> int:
    _quiet_pymodbus(args)
    return asyncio.run(_sim_async(args))
