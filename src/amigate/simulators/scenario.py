"""Simulation scenarios: the TOML files in ``simulators/`` describing fleets, buses and faults."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amigate.errors import ConfigError
from amigate.meter_models import MeterModel, load_models
from amigate.resources import data_path
from amigate.simulators.bus import VirtualBus
from amigate.simulators.dlt645_meter import Clock, Dlt645Meter
from amigate.simulators.faults import Fault, FaultSet
from amigate.simulators.load_shape import LoadShape, TouSchedule
from amigate.simulators.physics import MeterPhysics, utc_now

_METER_KEYS = {
    "address", "model", "load", "initial_kwh", "clock_offset_s", "clock_drift_ppm", "faults",
    "preamble", "response_delay", "sync_limit_s",
}  # fmt: skip
_GROUP_KEYS = (_METER_KEYS - {"address"}) | {"count", "first_address"}
_BUS_KEYS = {"name", "listen", "baud", "wire_time", "meters", "groups"}
_MODBUS_METER_KEYS = {"unit_id", "model", "load", "initial_kwh", "faults"}
_MODBUS_GROUP_KEYS = (_MODBUS_METER_KEYS - {"unit_id"}) | {"count", "first_unit_id"}


@dataclass(frozen=True, kw_only=True)
class MeterSpec:
    """One meter of a scenario."""

    address: str
    model: str
    load: Mapping[str, Any] = field(default_factory=dict)
    initial_kwh: Decimal | None = None
    clock_offset_s: float = 0.0
    clock_drift_ppm: float = 0.0
    faults: tuple[Fault, ...] = ()
    preamble: int = 2
    response_delay: float = 0.0
    sync_limit_s: float = 300.0


@dataclass(frozen=True, kw_only=True)
class BusSpec:
    """One virtual bus and where it is served."""

    name: str
    listen: str = "tcp://127.0.0.1:0"
    baud: int = 2400
    wire_time: bool = False
    meters: tuple[MeterSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModbusMeterSpec:
    """One simulated Modbus meter: ``faults`` as ``kind`` or ``kind:argument`` strings."""

    unit_id: int
    model: str
    load: Mapping[str, Any] = field(default_factory=dict)
    initial_kwh: Decimal = Decimal("1234.56")
    faults: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModbusBusSpec:
    """One simulated Modbus TCP bus (``[[modbus]]``)."""

    name: str
    listen: str = "tcp://127.0.0.1:0"
    meters: tuple[ModbusMeterSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole scenario file."""

    name: str
    description: str = ""
    history_days: float = 7.0
    seed: int = 1
    tou: TouSchedule = field(default_factory=TouSchedule)
    buses: tuple[BusSpec, ...] = ()
    modbus: tuple[ModbusBusSpec, ...] = ()
    path: Path | None = None


def find_scenario(name_or_path: str) -> Path:
    """Resolve ``demo`` to the shipped ``simulators/demo.toml``, or accept a file path.

    Raises:
        ConfigError: neither a file nor a shipped scenario of that name exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = data_path("simulators") / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in data_path("simulators").glob("*.toml"))
    raise ConfigError(
        f"scenario {name_or_path!r}: no such file, and no shipped scenario of that name "
        f"(shipped: {', '.join(available)})"
    )


def load_scenario(name_or_path: str, *, models: Mapping[str, MeterModel] | None = None) -> Scenario:
    """Load and validate a scenario.

    Args:
        name_or_path: a shipped scenario name (``demo``) or a file path.
        models: the meter models to check against (default: the shipped ones).

    Returns:
        The scenario.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and entry.
    """
    path = find_scenario(name_or_path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_scenario(document, path, models=models)


def parse_scenario(
    document: Mapping[str, Any], path: Path, *, models: Mapping[str, MeterModel] | None = None
) -> Scenario:
    """Validate a parsed scenario document (as read from ``path``).

    Raises:
        ConfigError: the message names the file and entry.
    """
    known = models if models is not None else load_models()
    try:
        return _scenario(document, path, known)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError, InvalidOperation, KeyError) as exc:
        raise ConfigError(f"{path}: invalid value: {exc}") from None


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _scenario(
    document: Mapping[str, Any], path: Path, models: Mapping[str, MeterModel]
) -> Scenario:
    _check_keys(document, {"scenario", "bus", "modbus"}, "top level")
    head = document.get("scenario", {})
    _check_keys(head, {"description", "history_days", "seed", "tou"}, "[scenario]")
    tou = TouSchedule.from_list(head["tou"]) if "tou" in head else TouSchedule()
    buses = []
    seen: set[str] = set()
    for i, raw in enumerate(document.get("bus", []), start=1):
        where = f"bus #{i} ({raw.get('name', '?')})"
        _check_keys(raw, _BUS_KEYS, where)
        meters: list[MeterSpec] = []
        for j, m in enumerate(raw.get("meters", []), start=1):
            meters.append(_meter(m, f"{where} meter #{j}", models))
        for j, g in enumerate(raw.get("groups", []), start=1):
            meters.extend(_group(g, f"{where} group #{j}", models))
        for meter in meters:
            if meter.address in seen:
                raise ConfigError(f"{where}: address {meter.address} appears twice")
            seen.add(meter.address)
        listen = str(raw.get("listen", "tcp://127.0.0.1:0"))
        if listen != "pty" and not listen.startswith("tcp://"):
            raise ConfigError(f"{where}: listen = {listen!r} must be 'pty' or tcp://HOST:PORT")
        buses.append(
            BusSpec(
                name=str(raw.get("name", f"bus{i}")),
                listen=listen,
                baud=int(raw.get("baud", 2400)),
                wire_time=bool(raw.get("wire_time", False)),
                meters=tuple(meters),
            )
        )
    if not buses:
        raise ConfigError("no [[bus]] defined")
    return Scenario(
        name=path.stem,
        description=str(head.get("description", "")),
        history_days=float(head.get("history_days", 7)),
        seed=int(head.get("seed", 1)),
        tou=tou,
        buses=tuple(buses),
        modbus=tuple(
            _modbus_bus(raw, f"modbus #{i} ({raw.get('name', '?')})", models)
            for i, raw in enumerate(document.get("modbus", []), start=1)
        ),
        path=path,
    )


def _modbus_bus(
    raw: Mapping[str, Any], where: str, models: Mapping[str, MeterModel]
) -> ModbusBusSpec:
    from amigate.simulators.modbus_meter import FAULTS

    _check_keys(raw, {"name", "listen", "meters", "groups"}, where)
    entries: list[tuple[int, Mapping[str, Any], str]] = []
    for j, m in enumerate(raw.get("meters", []), start=1):
        _check_keys(m, _MODBUS_METER_KEYS, f"{where} meter #{j}")
        entries.append((int(m.get("unit_id", 0)), m, f"{where} meter #{j}"))
    for j, g in enumerate(raw.get("groups", []), start=1):
        _check_keys(g, _MODBUS_GROUP_KEYS, f"{where} group #{j}")
        first, count = int(g.get("first_unit_id", 0)), int(g.get("count", 0))
        entries.extend((first + n, g, f"{where} group #{j}") for n in range(count))
    meters: list[ModbusMeterSpec] = []
    for unit, m, at in entries:
        model = str(m.get("model"))
        if not 1 <= unit <= 247 or any(x.unit_id == unit for x in meters):
            raise ConfigError(f"{at}: unit id {unit} is outside 1..247 or used twice")
        if model not in models or models[model].modbus is None:
            raise ConfigError(f"{at}: {model!r} is not a Modbus model")
        faults = tuple(str(f) for f in m.get("faults", []))
        for fault in faults:
            if fault.split(":")[0] not in FAULTS:
                raise ConfigError(f"{at}: fault {fault!r} is not one of {', '.join(FAULTS)}")
        meters.append(ModbusMeterSpec(
            unit_id=unit, model=model, load=dict(m.get("load", {})), faults=faults,
            initial_kwh=Decimal(str(m.get("initial_kwh", "1234.56"))),
        ))  # fmt: skip
    listen = str(raw.get("listen", "tcp://127.0.0.1:0"))
    if not listen.startswith("tcp://"):
        raise ConfigError(f"{where}: listen = {listen!r} must be tcp://HOST:PORT")
    return ModbusBusSpec(name=str(raw.get("name", "modbus")), listen=listen, meters=tuple(meters))


def _address(text: object, where: str) -> str:
    address = str(text)
    if len(address) != 12 or not address.isdigit():
        raise ConfigError(f"{where}: address {address!r} must be 12 decimal digits")
    return address


def _meter(raw: Mapping[str, Any], where: str, models: Mapping[str, MeterModel]) -> MeterSpec:
    _check_keys(raw, _METER_KEYS, where)
    if "address" not in raw or "model" not in raw:
        raise ConfigError(f"{where}: address and model are required")
    return _spec(raw, _address(raw["address"], where), where, models)


def _group(raw: Mapping[str, Any], where: str, models: Mapping[str, MeterModel]) -> list[MeterSpec]:
    _check_keys(raw, _GROUP_KEYS, where)
    first = int(_address(raw.get("first_address", ""), where))
    count = int(raw.get("count", 0))
    if not 1 <= count <= 10_000:
        raise ConfigError(f"{where}: count = {count} must be within 1..10000")
    return [_spec(raw, f"{first + n:012d}", where, models) for n in range(count)]


def _spec(
    raw: Mapping[str, Any], address: str, where: str, models: Mapping[str, MeterModel]
) -> MeterSpec:
    model = str(raw.get("model"))
    if model not in models:
        raise ConfigError(f"{where}: unknown model {model!r} (known: {', '.join(models)})")
    if models[model].dlt645_version is None:
        raise ConfigError(f"{where}: model {model!r} is not a DL/T 645 model")
    try:
        faults = tuple(Fault.from_mapping(f) for f in raw.get("faults", []))
        LoadShape.from_mapping(raw.get("load", {}))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    initial = raw.get("initial_kwh")
    return MeterSpec(
        address=address,
        model=model,
        load=dict(raw.get("load", {})),
        initial_kwh=Decimal(str(initial)) if initial is not None else None,
        clock_offset_s=float(raw.get("clock_offset_s", 0.0)),
        clock_drift_ppm=float(raw.get("clock_drift_ppm", 0.0)),
        faults=faults,
        preamble=int(raw.get("preamble", 2)),
        response_delay=float(raw.get("response_delay", 0.0)),
        sync_limit_s=float(raw.get("sync_limit_s", 300.0)),
    )


def build_bus(
    spec: BusSpec,
    *,
    models: Mapping[str, MeterModel],
    clock: Clock = utc_now,
    origin: datetime | None = None,
    history_days: float = 7.0,
    tou: TouSchedule | None = None,
    seed: int = 1,
) -> VirtualBus:
    """Create the meters of one bus.

    Args:
        spec: the bus description.
        models: meter models by id.
        clock: the simulated time source.
        origin: when the simulation starts (default: the clock's current time).
        history_days: meters start counting this long before ``origin``, so that
            their load profile and daily freezes hold history to backfill.
        tou: the time-of-use schedule for every meter.
        seed: varies load noise and voltages per meter, reproducibly.

    Returns:
        The bus, ready to be served.
    """
    now = origin or clock()
    start = now - timedelta(days=history_days)
    meters = []
    for index, m in enumerate(spec.meters):
        meter_seed = seed * 1000 + index
        shape = LoadShape.from_mapping(m.load, seed=meter_seed)
        initial = m.initial_kwh
        if initial is None:
            initial = Decimal(1000 + (int(m.address) * 7919) % 20000)
        physics = MeterPhysics(
            model=models[m.model],
            shape=shape,
            start=start,
            tou=tou,
            initial_kwh=initial,
            clock_offset_s=m.clock_offset_s,
            clock_drift_ppm=m.clock_drift_ppm,
            seed=meter_seed,
        )
        meters.append(
            Dlt645Meter(
                address=m.address,
                model=models[m.model],
                physics=physics,
                origin=now,
                faults=FaultSet([replace(f) for f in m.faults], seed=meter_seed),
                preamble=m.preamble,
                response_delay=m.response_delay,
                sync_limit_s=m.sync_limit_s,
            )
        )
    return VirtualBus(meters, name=spec.name, clock=clock, baud=spec.baud, wire_time=spec.wire_time)


def build_buses(
    scenario: Scenario,
    *,
    models: Mapping[str, MeterModel] | None = None,
    clock: Clock = utc_now,
) -> list[VirtualBus]:
    """Create every bus of a scenario, sharing one clock and origin."""
    known = models if models is not None else load_models()
    origin = clock()
    return [
        build_bus(
            spec,
            models=known,
            clock=clock,
            origin=origin,
            history_days=scenario.history_days,
            tou=scenario.tou,
            seed=scenario.seed,
        )
        for spec in scenario.buses
    ]
