"""``amigate demo``: a simulated fleet and the service reading it, in one process.

The scenario's DL/T 645 buses are served on TCP or a pseudo-terminal, its Modbus
buses on Modbus TCP; the matching fleet file is written next to the database, and
the service (bus workers and API) runs on SQLite until Ctrl-C. Simulated meters
and the service share one clock, so ``--speed`` (time-lapse) keeps them in step.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amigate.config import Settings
from amigate.meter_models import MeterModel
from amigate.service import Service, TimeBase
from amigate.simulators import PtyServer, Scenario, build_buses, serve_tcp
from amigate.simulators.modbus_meter import ModbusSimMeter, apply_fault
from amigate.simulators.modbus_server import ModbusSimServer
from amigate.simulators.scenario import find_scenario, parse_scenario
from amigate.storage import Store

__all__ = ["DemoPlan", "fleet_toml", "load_demo_scenario", "run_demo"]

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    """What the demo runs and where it writes."""

    scenario: str = "demo-fleet"
    meters: int | None = None
    folder: Path = Path("amigate-demo")
    database: Path = Path("amigate-demo.db")
    host: str = "127.0.0.1"
    port: int = 8000
    interval_minutes: int = 1
    speed: float = 1.0


def load_demo_scenario(
    name: str, models: Mapping[str, MeterModel], meters: int | None = None
) -> Scenario:
    """Load a scenario, shrinking its groups so about ``meters`` meters remain.

    Single meters (the faulty ones) are always kept; each group keeps at least one.
    """
    path = find_scenario(name)
    document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    if meters is not None:
        buses = [*document.get("bus", []), *document.get("modbus", [])]
        fixed = sum(len(b.get("meters", [])) for b in buses)
        groups = [g for b in buses for g in b.get("groups", [])]
        total = sum(int(g.get("count", 0)) for g in groups)
        if total and fixed + total > meters:
            factor = max(0, meters - fixed) / total
            for group in groups:
                group["count"] = max(1, round(int(group.get("count", 0)) * factor))
    return parse_scenario(document, path, models=models)


def fleet_toml(scenario: Scenario, urls: Mapping[str, str], interval_minutes: int) -> str:
    """The fleet file for the served scenario (``urls``: bus name -> where it is served)."""
    spread = min(10, interval_minutes * 60 // 6)
    lines = ["# Written by `amigate demo` for the simulated fleet it serves.", ""]
    for family, timeout in (("dlt645", 0.5), ("modbus", 0.3)):
        lines += [
            f"[plan.{family}]", f"interval_minutes = {interval_minutes}", f"spread_s = {spread}",
            f"timeout_s = {timeout}", "retries = 0", "backoff_s = 120", "backoff_max_s = 600", "",
        ]  # fmt: skip
    for bus in scenario.buses:
        protocol = "dlt645-1997" if "1997" in bus.meters[0].model else "dlt645-2007"
        lines += ["[[bus]]", f"name = {json.dumps(bus.name)}", f'protocol = "{protocol}"',
                  f"url = {json.dumps(urls[bus.name])}", ""]  # fmt: skip
        for meter in bus.meters:
            lines += ["[[bus.meters]]", f'address = "{meter.address}"',
                      f'model = "{meter.model}"', ""]  # fmt: skip
    for mbus in scenario.modbus:
        lines += ["[[bus]]", f"name = {json.dumps(mbus.name)}", 'protocol = "modbus"',
                  f"url = {json.dumps(urls[mbus.name])}", ""]  # fmt: skip
        for m in mbus.meters:
            lines += ["[[bus.meters]]", f"unit_id = {m.unit_id}", f'model = "{m.model}"', ""]
    return "\n".join(lines)


def faulty_meters(scenario: Scenario) -> list[str]:
    """One line per meter with an injected fault."""
    out = []
    for bus in scenario.buses:
        for m in bus.meters:
            what = [str(f.kind) for f in m.faults]
            if m.clock_offset_s or m.clock_drift_ppm:
                what.append(f"clock {m.clock_offset_s:+g} s, drift {m.clock_drift_ppm:g} ppm")
            if what:
                out.append(f"{bus.name} meter {m.address} ({m.model}): {', '.join(what)}")
    for mbus in scenario.modbus:
        for mm in mbus.meters:
            if mm.faults:
                out.append(f"{mbus.name} unit {mm.unit_id} ({mm.model}): {', '.join(mm.faults)}")
    return out


async def _serve_simulators(
    scenario: Scenario, models: Mapping[str, MeterModel], clock: TimeBase, closers: list[Closer]
) -> dict[str, str]:
    urls: dict[str, str] = {}
    for spec, bus in zip(scenario.buses, build_buses(scenario, models=models, clock=clock.now),
                         strict=True):  # fmt: skip
        if spec.listen == "pty":
            pty = PtyServer(bus)
            await pty.start()
            closers.append(pty.aclose)
            urls[spec.name] = f"serial://{pty.path}"
        else:
            host, _, port = spec.listen.removeprefix("tcp://").rpartition(":")
            server = await serve_tcp(bus, host or "127.0.0.1", int(port))

            async def close(server: Any = server) -> None:
                server.close()
                await server.wait_closed()

            closers.append(close)
            bound = server.sockets[0].getsockname()
            urls[spec.name] = f"tcp://{bound[0]}:{bound[1]}"
    for mspec in scenario.modbus:
        meters = []
        for m in mspec.meters:
            meter = ModbusSimMeter.build(models[m.model], m.unit_id, clock=clock.now, load=m.load,
                                         initial_kwh=m.initial_kwh)  # fmt: skip
            for fault in m.faults:
                kind, _, argument = fault.partition(":")
                apply_fault(meter, kind, argument)
            meters.append(meter)
        mserver = ModbusSimServer(meters)
        closers.append(mserver.aclose)
        host, _, port = mspec.listen.removeprefix("tcp://").rpartition(":")
        urls[mspec.name] = await mserver.serve_tcp(host or "127.0.0.1", int(port))
    return urls


def _prepare(plan: DemoPlan, fleet: str) -> Path:
    """Write the fleet file and remove the previous demo database (a clean slate)."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    fleet_file = plan.folder / "fleet.toml"
    fleet_file.write_text(fleet, encoding="utf-8")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{plan.database}{suffix}").unlink(missing_ok=True)
    return fleet_file


async def run_demo(
    plan: DemoPlan,
    settings: Callable[..., Settings],
    models: Mapping[str, MeterModel],
    say: Callable[[str], None],
) -> None:
    """Serve the simulated fleet and run the service on it until SIGINT or SIGTERM.

    Args:
        plan: what to run.
        settings: builds the settings from overrides (``load_settings``).
        models: meter models by id.
        say: prints a line for the user.
    """
    from amigate.fleet import load_fleet
    from amigate.storage import make_engine, upgrade

    scenario = load_demo_scenario(plan.scenario, models, plan.meters)
    clock = TimeBase(plan.speed)
    closers: list[Closer] = []
    try:
        urls = await _serve_simulators(scenario, models, clock, closers)
        fleet_file = _prepare(plan, fleet_toml(scenario, urls, plan.interval_minutes))
        effective = settings(
            database_url=f"sqlite:///{plan.database}", fleet_file=fleet_file,
            time_scale=plan.speed, api_host=plan.host, api_port=plan.port,
        )  # fmt: skip
        fleet = load_fleet(fleet_file, models)
        engine = make_engine(effective.database_url.get_secret_value())
        try:
            upgrade(engine)
            base = f"http://{plan.host}:{plan.port}"

            def ready() -> None:
                count = len(fleet.meters)
                lines = [
                    "", f"amigate demo: {count} simulated meters on {len(fleet.buses)} buses",
                    *(f"  {b.name:<10} {b.protocol:<12} {len(b.meters):>4} meters  {b.url}"
                      for b in fleet.buses),
                    f"  fleet file   {fleet_file}",
                    f"  database     {plan.database} (SQLite, recreated on each start)",
                    f"  API          {base}/docs",
                    f"  health       {base}/healthz   {base}/readyz",
                    f"  metrics      {base}/metrics",
                    f"  read every {plan.interval_minutes} min"
                    + (f" (time-lapse: {plan.speed:g}x)" if plan.speed != 1 else "")
                    + "; the first intervals are stored after the second read",
                    "  faulty meters (expect warnings about them):",
                    *(f"    {line}" for line in faulty_meters(scenario)),
                    "Press Ctrl-C to stop.", "",
                ]  # fmt: skip
                for line in lines:
                    say(line)

            service = Service(
                effective, Store(engine), fleet=fleet, models=models, host=plan.host,
                port=plan.port, clock=clock, on_ready=ready,
            )  # fmt: skip
            await service.run()
        finally:
            engine.dispose()
    finally:
        for closer in reversed(closers):
            with contextlib.suppress(OSError, RuntimeError):
                await closer()
