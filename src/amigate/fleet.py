"""Fleet configuration: buses, the meters on them and their read plans, from TOML.

::

    [plan.dlt645]                 # defaults per protocol (dlt645 covers both generations)
    timeout_s = 1.0
    [plan.modbus]
    timeout_s = 0.5

    [[bus]]
    name = "feeder-1"
    protocol = "dlt645-2007"      # dlt645-2007, dlt645-1997 or modbus
    url = "tcp://10.0.0.5:4001"   # or port = "/dev/ttyUSB0" with baud, parity, bytesize, stopbits
    plan = { retries = 2 }        # overrides of the protocol's plan for this bus

    [[bus.meters]]
    address = "000000000001"      # DL/T 645: 12 digits; Modbus: unit_id = 1..247
    model = "dlt645-2007-single-phase"
    ct_ratio = 40                 # optional: pt_ratio, rated_voltage, rated_current,
    timezone = "Asia/Shanghai"    # max_current, transformer_area, service_point,
    role = "customer"             # role = customer | area-total

Every error names the file and the entry (``bus 'feeder-1' meter #3``) and the problem.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amigate.domain import Meter, MeterRole, Protocol
from amigate.drivers.modbus_url import parse_modbus_url
from amigate.errors import ConfigError
from amigate.meter_models import MeterModel
from amigate.transports.url import SerialParams, parse_url

__all__ = ["BusConfig", "Fleet", "ReadPlan", "load_fleet", "parse_fleet", "parse_meter"]

_ADDRESS_DIGITS = 12
_E = TypeVar("_E", Protocol, MeterRole)


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """When and how patiently the meters of a bus are read.

    Attributes:
        interval_minutes: the read cycle and interval length; divides an hour or a day.
        spread_s: reads of a cycle start this long after the boundary at most,
            spread evenly over the bus's meters, so a bus is not hammered at :00.
        timeout_s: seconds to wait for one reply (``0``: computed from the line speed).
        retries: further attempts per request.
        backoff_s: a meter that failed a cycle is probed again after this long,
            doubled on each further failure ...
        backoff_max_s: ... up to this.
        instantaneous: read per-phase voltage, current, power every cycle.
    """

    interval_minutes: int = 15
    spread_s: float = 30.0
    timeout_s: float = 0.0
    retries: int = 1
    backoff_s: float = 60.0
    backoff_max_s: float = 3600.0
    instantaneous: bool = True

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: an impossible value (the caller adds where it came from).
        """
        m = self.interval_minutes
        if m <= 0 or (60 % m and 1440 % m):
            raise ConfigError(f"interval_minutes = {m} must divide an hour or a day")
        if self.spread_s < 0 or self.spread_s >= m * 60:
            raise ConfigError(f"spread_s = {self.spread_s} must be >= 0 and below the interval")
        if self.timeout_s < 0 or self.retries < 0:
            raise ConfigError("timeout_s and retries must be >= 0")
        if self.backoff_s <= 0 or self.backoff_max_s < self.backoff_s:
            raise ConfigError("backoff_s must be > 0 and backoff_max_s >= backoff_s")


_PLAN_KEYS = {f.name: f.type for f in fields(ReadPlan)}
#: Defaults per protocol family, before the file's [plan.*] tables.
DEFAULT_PLANS = {"dlt645": ReadPlan(), "modbus": ReadPlan(timeout_s=0.5)}


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    """One serial port or TCP endpoint and the meters behind it.

    Attributes:
        name: unique label; meters are stored under it.
        protocol: what the meters on it speak (one protocol per bus).
        url: where it is reached (``serial://...``, ``tcp://...``, ``modbus+tcp://...``).
        plan: the read plan.
        meters: the meters (``Meter`` without ids).
    """

    name: str
    protocol: Protocol
    url: str
    plan: ReadPlan
    meters: tuple[Meter, ...]


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """A whole fleet file."""

    buses: tuple[BusConfig, ...]
    path: Path | None = None

    @property
    def meters(self) -> tuple[Meter, ...]:
        """Every meter of every bus."""
        return tuple(m for bus in self.buses for m in bus.meters)


def load_fleet(path: Path | str, models: Mapping[str, MeterModel]) -> Fleet:
    """Load and validate a fleet file.

    Args:
        path: the TOML file.
        models: the known meter models by id (``load_models()``).

    Returns:
        The fleet.

    Raises:
        ConfigError: unreadable, not TOML, or invalid; the message names the entry.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read fleet file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return replace(parse_fleet(document, models, where=str(path)), path=path)


def parse_fleet(
    document: Mapping[str, Any], models: Mapping[str, MeterModel], *, where: str = "fleet"
) -> Fleet:
    """Validate a parsed fleet document (see the module docstring for the format).

    Raises:
        ConfigError: the message names ``where``, the entry and the problem.
    """
    _only(document, {"plan", "bus"}, where)
    plans = dict(DEFAULT_PLANS)
    raw_plans = _table(document, "plan", where)
    _only(raw_plans, set(plans), f"{where} [plan]")
    for family, table in raw_plans.items():
        plans[family] = _plan(plans[family], table, f"{where} [plan.{family}]")
    raw_buses = document.get("bus", [])
    if not isinstance(raw_buses, list) or not raw_buses:
        raise ConfigError(f"{where}: no [[bus]] entries")
    buses: list[BusConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_buses, 1):
        bus = _bus(raw, f"{where} bus #{index}", models, plans)
        if bus.name in seen:
            raise ConfigError(f"{where} bus #{index}: name {bus.name!r} is used twice")
        seen.add(bus.name)
        buses.append(bus)
    endpoints = [b.url.split("?")[0] for b in buses]
    for url in endpoints:
        if endpoints.count(url) > 1:
            raise ConfigError(f"{where}: {url} is used by more than one bus; merge them")
    return Fleet(buses=tuple(buses))


def parse_meter(
    raw: Mapping[str, Any], *, bus: str, protocol: Protocol, models: Mapping[str, MeterModel],
    where: str = "meter",
) -> Meter:  # fmt: skip
    """Validate one meter entry (the keys of ``[[bus.meters]]``) for a bus of ``protocol``.

    Raises:
        ConfigError: the message names ``where`` and the problem.
    """
    return _meter(dict(raw), where, bus, protocol, models)


# --- entries ---------------------------------------------------------------------------


def _bus(
    raw: Any, where: str, models: Mapping[str, MeterModel], plans: Mapping[str, ReadPlan]
) -> BusConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    line_keys = {"port", "baud", "parity", "bytesize", "stopbits"}
    _only(raw, {"name", "protocol", "url", "plan", "meters"} | line_keys, where)
    name = _str(raw, "name", where)
    where = f"{where.rsplit(' bus #', 1)[0]} bus {name!r}"
    protocol = _enum(raw, "protocol", Protocol, where)
    family = "modbus" if protocol is Protocol.MODBUS else "dlt645"
    url = _url(raw, protocol, where)
    plan = _plan(plans[family], _table(raw, "plan", where), f"{where} plan")
    raw_meters = raw.get("meters", [])
    if not isinstance(raw_meters, list) or not raw_meters:
        raise ConfigError(f"{where}: no [[bus.meters]] entries")
    meters: list[Meter] = []
    for index, m in enumerate(raw_meters, 1):
        meter = _meter(m, f"{where} meter #{index}", name, protocol, models)
        if any(other.address == meter.address for other in meters):
            raise ConfigError(
                f"{where} meter #{index}: address {meter.address} is already on this bus"
            )
        meters.append(meter)
    return BusConfig(name=name, protocol=protocol, url=url, plan=plan, meters=tuple(meters))


def _url(raw: Mapping[str, Any], protocol: Protocol, where: str) -> str:
    line = {k: raw[k] for k in ("baud", "parity", "bytesize", "stopbits") if k in raw}
    if ("url" in raw) == ("port" in raw):
        raise ConfigError(f"{where}: give either url or port (a serial device), not both")
    if "url" in raw:
        if line:
            raise ConfigError(f"{where}: line settings go in the url's query, or use port")
        url = _str(raw, "url", where)
    else:
        port = _str(raw, "port", where)
        try:
            params = SerialParams(
                port=port, baudrate=int(line.get("baud", 9600 if protocol == "modbus" else 2400)),
                parity=str(line.get("parity", "N" if protocol == "modbus" else "E")),
                bytesize=int(line.get("bytesize", 8)), stopbits=float(line.get("stopbits", 1)),
            )  # fmt: skip
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        url = params.url
    try:
        if protocol is Protocol.MODBUS:
            parse_modbus_url(url)
        else:
            parse_url(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return url


def _meter(
    raw: Any, where: str, bus: str, protocol: Protocol, models: Mapping[str, MeterModel]
) -> Meter:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    optional = {"ct_ratio", "pt_ratio", "rated_voltage", "rated_current", "max_current",
                "timezone", "transformer_area", "service_point", "role"}  # fmt: skip
    ident = "unit_id" if protocol is Protocol.MODBUS else "address"
    _only(raw, {ident, "model"} | optional, where)
    if protocol is Protocol.MODBUS:
        unit = raw.get("unit_id")
        if not isinstance(unit, int) or isinstance(unit, bool) or not 1 <= unit <= 247:
            raise ConfigError(f"{where}: unit_id = {unit!r} must be an integer 1..247")
        address = str(unit)
    else:
        address = _str(raw, "address", where)
        if len(address) != _ADDRESS_DIGITS or not address.isdigit():
            raise ConfigError(f"{where}: address = {address!r} must be 12 decimal digits")
    where = f"{where} ({ident} {address})"
    model_id = _str(raw, "model", where)
    model = models.get(model_id)
    if model is None:
        known = ", ".join(sorted(m for m in models if models[m].protocol == protocol)) or "none"
        raise ConfigError(f"{where}: unknown model {model_id!r} (for {protocol}: {known})")
    if model.protocol != protocol:
        raise ConfigError(
            f"{where}: model {model_id!r} speaks {model.protocol}, the bus {protocol}"
        )
    timezone = raw.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: timezone = {timezone!r} is not an IANA timezone") from None
    return Meter(
        address=address, protocol=protocol, model=model_id, bus=bus,
        ct_ratio=_positive(raw, "ct_ratio", where) or Decimal(1),
        pt_ratio=_positive(raw, "pt_ratio", where) or Decimal(1),
        rated_voltage=_positive(raw, "rated_voltage", where) or model.rated.voltage_v,
        rated_current=_positive(raw, "rated_current", where) or model.rated.current_a,
        max_current=_positive(raw, "max_current", where) or model.rated.max_current_a,
        timezone=str(timezone),
        transformer_area=_optional_str(raw, "transformer_area", where),
        service_point=_optional_str(raw, "service_point", where),
        role=_enum(raw, "role", MeterRole, where, MeterRole.CUSTOMER),
    )  # fmt: skip


def _plan(base: ReadPlan, table: Mapping[str, Any], where: str) -> ReadPlan:
    _only(table, set(_PLAN_KEYS), where)
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key == "instantaneous":
            want: type = bool
            ok = isinstance(value, bool)
        else:
            want = int if key in {"interval_minutes", "retries"} else float
            ok = isinstance(value, int | want) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"{where}: {key} = {value!r} must be a {want.__name__}")
        changes[key] = want(value)
    try:
        return replace(base, **changes)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# --- small readers ---------------------------------------------------------------------


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _table(table: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table")
    return value


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} = {value!r} must be a non-empty string")
    return value


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    return _str(table, key, where) if key in table else None


def _positive(table: Mapping[str, Any], key: str, where: str) -> Decimal | None:
    if key not in table:
        return None
    value = table[key]
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {key} = {value!r} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise ConfigError(f"{where}: {key} = {value!r} must be a positive number")
    return number


def _enum(
    table: Mapping[str, Any], key: str, kind: type[_E], where: str, default: _E | None = None
) -> _E:
    if key not in table and default is not None:
        return default
    value = table.get(key)
    try:
        return kind(str(value))
    except ValueError:
        options = ", ".join(str(m) for m in kind)
        raise ConfigError(f"{where}: {key} = {value!r} is not one of {options}") from None
