"""Loading and validating the meter model files (TOML) into ``amigate.meter_models`` types."""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amigate.codecs import Dlt645Version, find_di
from amigate.codecs.modbus_values import max_sentinel, register_count
from amigate.errors import ConfigError
from amigate.meter_models.spec import (
    MANUAL_NUMBERING,
    MODBUS_DTYPES,
    MODBUS_MAX_BLOCK,
    PROTOCOLS,
    UNITS,
    DataId,
    MemorySpec,
    MeterModel,
    ModbusSpec,
    PointKind,
    PointSpec,
    Poll,
    RatedValues,
    Register,
    SerialDefaults,
)
from amigate.resources import data_path

_CHANNEL = re.compile(r"^[0-9A-Z]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?$")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class _Reader:
    """Typed access to one TOML table, raising ConfigError that names where it is."""

    def __init__(self, where: str, table: Mapping[str, Any]) -> None:
        self.where = where
        self.table = table
        self.used: set[str] = set()

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., /) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.fail(f"missing required key {key!r}")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(f"{key} = {value!r} must not be a boolean")
        if not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(f"{key} = {value!r} must be of type {names}")
        return value

    def decimal(self, key: str, default: Any = ...) -> Decimal:
        value = self.get(key, (int, float, str), default)
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(f"{key} = {value!r} is not a number") from None
        if not result.is_finite() or result <= 0:
            raise self.fail(f"{key} = {value!r} must be a positive number")
        return result

    def choice(self, key: str, options: Iterable[str], default: Any = ...) -> str:
        value: str = self.get(key, str, default)
        options = tuple(options)
        if value not in options:
            raise self.fail(f"{key} = {value!r} is not one of {', '.join(options)}")
        return value

    def only(self, *keys: str) -> None:
        """Reject unknown keys up front, so a typo is reported as such."""
        self.used.update(keys)
        self.no_extra_keys()

    def no_extra_keys(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise self.fail(f"unknown key(s) {', '.join(extra)}")


def _sub(parent: _Reader, key: str) -> _Reader:
    table = parent.get(key, dict, {})
    return _Reader(f"{parent.where} [{key}]", table)


def load_model(path: Path) -> MeterModel:
    """Load and validate one model definition file.

    Args:
        path: the ``.toml`` file.

    Returns:
        The validated model.

    Raises:
        ConfigError: the file is unreadable, not TOML, or invalid; the message names
            the file, the point (by index and channel) and the problem.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read model definition: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    top = _Reader(str(path), document)
    top.only("model", "points")
    model = _sub(top, "model")
    if "model" not in document:
        raise top.fail("missing the [model] table")
    model.only(
        "id", "protocol", "phases", "tariffs", "description", "rated", "serial", "memory", "modbus"
    )
    if "rated" not in model.table:
        raise model.fail("missing the [model.rated] table")
    model_id: str = model.get("id", str)
    if not _MODEL_ID.match(model_id):
        raise model.fail(f"id = {model_id!r} must be lower case letters, digits, '.', '_', '-'")
    if model_id != path.stem:
        raise model.fail(f"id = {model_id!r} does not match the file name {path.name!r}")
    protocol = model.choice("protocol", PROTOCOLS)
    phases: int = model.get("phases", int)
    if phases not in (1, 3):
        raise model.fail(f"phases = {phases} must be 1 or 3")
    tariffs: int = model.get("tariffs", int, 0)
    if not 0 <= tariffs <= 63:
        raise model.fail(f"tariffs = {tariffs} must be within 0..63")
    description: str = model.get("description", str)
    rated = _rated(_sub(model, "rated"))
    serial = _serial(_sub(model, "serial"), protocol)
    memory = _memory(_sub(model, "memory"))
    modbus = _modbus(_sub(model, "modbus"), protocol)
    model.no_extra_keys()
    raw_points = top.get("points", list)
    top.no_extra_keys()
    if not raw_points:
        raise top.fail("no [[points]] defined")
    points: list[PointSpec] = []
    seen: dict[tuple[str, PointKind], int] = {}
    for index, raw in enumerate(raw_points, start=1):
        label = raw.get("channel", "?") if isinstance(raw, dict) else "?"
        where = f"{path}: point #{index} ({label})"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a table")
        point = _point(_Reader(where, raw), protocol, memory, modbus)
        key = (point.channel, point.kind)
        if key in seen:
            raise ConfigError(
                f"{where}: channel {point.channel} ({point.kind}) is already defined by point "
                f"#{seen[key]}"
            )
        seen[key] = index
        if point.tariff is not None and point.tariff > tariffs:
            raise ConfigError(f"{where}: tariff {point.tariff} exceeds the model's {tariffs}")
        points.append(point)
    if modbus is not None:
        _check_overlaps(str(path), points)
    return MeterModel(
        id=model_id,
        protocol=protocol,
        description=description,
        phases=phases,
        tariffs=tariffs,
        rated=rated,
        serial=serial,
        memory=memory,
        points=tuple(points),
        path=path,
        modbus=modbus,
    )


def _rated(r: _Reader) -> RatedValues:
    constant = r.get("meter_constant", int, None)
    rated = RatedValues(
        voltage_v=r.decimal("voltage_v"),
        current_a=r.decimal("current_a"),
        max_current_a=r.decimal("max_current_a"),
        frequency_hz=r.decimal("frequency_hz", 50),
        meter_constant=constant,
    )
    if rated.max_current_a < rated.current_a:
        raise r.fail("max_current_a must not be below current_a")
    r.no_extra_keys()
    return rated


def _serial(r: _Reader, protocol: str) -> SerialDefaults:
    default_baud = 1200 if protocol == "dlt645-1997" else (9600 if protocol == "modbus" else 2400)
    baud: int = r.get("baud", int, default_baud)
    if baud not in (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200):
        raise r.fail(f"baud = {baud} is not a standard rate")
    serial = SerialDefaults(
        baud=baud,
        parity=r.choice("parity", ("N", "E", "O"), "N" if protocol == "modbus" else "E"),
        bytesize=r.get("bytesize", int, 8),
        stopbits=r.get("stopbits", int, 1),
    )
    r.no_extra_keys()
    return serial


def _memory(r: _Reader) -> MemorySpec:
    memory = MemorySpec(
        load_profile_interval_min=r.get("load_profile_interval_min", int, 15),
        load_profile_days=r.get("load_profile_days", int, 0),
        daily_freezes=r.get("daily_freezes", int, 0),
    )
    if memory.load_profile_interval_min not in (1, 5, 10, 15, 30, 60):
        raise r.fail("load_profile_interval_min must be one of 1, 5, 10, 15, 30, 60")
    if not 0 <= memory.load_profile_days <= 366 or not 0 <= memory.daily_freezes <= 254:
        raise r.fail("load_profile_days must be within 0..366 and daily_freezes within 0..254")
    r.no_extra_keys()
    return memory


def _point(r: _Reader, protocol: str, memory: MemorySpec, modbus: ModbusSpec | None) -> PointSpec:
    channel: str = r.get("channel", str)
    if not _CHANNEL.match(channel):
        raise r.fail(f"channel = {channel!r} is not an OBIS-style code such as '1.8.0'")
    kind = PointKind(r.choice("kind", [k.value for k in PointKind]))
    unit: str = r.get("unit", str)
    if unit not in UNITS:
        raise r.fail(f"unit = {unit!r} is not one of {', '.join(sorted(u for u in UNITS if u))}")
    phase = r.get("phase", str, None)
    if phase is not None and phase not in ("A", "B", "C"):
        raise r.fail(f"phase = {phase!r} must be A, B or C")
    tariff = r.get("tariff", int, None)
    if tariff is not None and not 1 <= tariff <= 63:
        raise r.fail(f"tariff = {tariff} must be within 1..63")
    source: DataId | Register = (
        _register(r, modbus) if modbus is not None else _data_id(r, protocol, kind, memory)
    )
    default_poll = {
        PointKind.DAILY_FREEZE: Poll.BACKFILL,
        PointKind.LOAD_PROFILE: Poll.BACKFILL,
        PointKind.IDENTITY: Poll.ON_DEMAND,
        PointKind.STATUS: Poll.DAILY,
    }.get(kind, Poll.CYCLE)
    poll = Poll(r.choice("poll", [p.value for p in Poll], default_poll.value))
    point = PointSpec(
        channel=channel,
        kind=kind,
        unit=unit,
        source=source,
        name=r.get("name", str, ""),
        phase=phase,
        tariff=tariff,
        poll=poll,
        description=r.get("description", str, ""),
        unconfirmed=r.get("unconfirmed", bool, False),
    )
    r.no_extra_keys()
    return point


def _data_id(r: _Reader, protocol: str, kind: PointKind, memory: MemorySpec) -> DataId:
    for key in ("register", "function", "dtype", "word_order", "scale", "manual", "not_available"):
        if key in r.table:
            raise r.fail(f"{key} is a Modbus key; DL/T 645 points use 'di'")
    text: str = r.get("di", str).upper().replace(" ", "")
    width = 2 if protocol == "dlt645-1997" else 4
    indexed = text.endswith("NN")
    digits = text[:-2] + "00" if indexed else text
    if len(digits) != width * 2 or not re.fullmatch(r"[0-9A-F]+", digits):
        raise r.fail(f"di = {text!r} must be {width * 2} hex digits for {protocol}")
    depth: int = r.get("depth", int, 0)
    if kind == PointKind.DAILY_FREEZE:
        depth = depth or memory.daily_freezes
    if indexed and depth < 1:
        raise r.fail(f"di = {text!r} is indexed (NN) but no depth is given")
    if not indexed and "depth" in r.table:
        raise r.fail("depth is only meaningful for an indexed di ending in NN")
    if kind == PointKind.LOAD_PROFILE and memory.load_profile_days == 0:
        raise r.fail("load_profile point but [model.memory] load_profile_days is 0")
    source = DataId(di=int(digits, 16), width=width, indexed=indexed, depth=depth)
    version = Dlt645Version(protocol)
    for index in (1, depth) if indexed else (1,):
        spec = find_di(source.at(index), version)
        if spec is None:
            raise r.fail(f"di {source.at(index):0{width * 2}X} is not in the {protocol} catalogue")
    assert spec is not None
    unit: str = r.table.get("unit", "")
    if kind != PointKind.LOAD_PROFILE and (spec.unit or "") != unit:
        raise r.fail(
            f"unit = {unit!r} but DI {spec.di_hex} ({spec.name}) is in {spec.unit or 'no unit'!r}"
        )
    return source


def _modbus(r: _Reader, protocol: str) -> ModbusSpec | None:
    if protocol != "modbus":
        if r.table:
            raise r.fail("only Modbus models have a [model.modbus] table")
        return None
    max_block: int = r.get("max_block", int, 50)
    if not 1 <= max_block <= MODBUS_MAX_BLOCK:
        raise r.fail(f"max_block = {max_block} must be within 1..{MODBUS_MAX_BLOCK}")
    max_gap: int = r.get("max_gap", int, 0)
    if not 0 <= max_gap < max_block:
        raise r.fail(f"max_gap = {max_gap} must be within 0..max_block-1")
    spec = ModbusSpec(
        max_block=max_block,
        max_gap=max_gap,
        manual_numbering=r.choice("manual_numbering", MANUAL_NUMBERING, "wire"),
        not_available=r.choice("not_available", ("none", "max"), "none"),
    )
    r.no_extra_keys()
    return spec


def _manual_number(function: int, address: int, numbering: str) -> int:
    if numbering == "one-based":
        return address + 1
    if numbering == "modicon":
        return (30001 if function == 4 else 40001) + address
    return address


def _register(r: _Reader, modbus: ModbusSpec) -> Register:
    if "di" in r.table:
        raise r.fail("di is a DL/T 645 key; Modbus points use 'register'")
    address: int = r.get("register", int)
    if not 0 <= address <= 0xFFFF:
        raise r.fail(f"register = {address} is outside 0..65535")
    function: int = r.get("function", int, 3)
    if function not in (3, 4):
        raise r.fail(f"function = {function} must be 3 (holding) or 4 (input)")
    dtype = r.choice("dtype", MODBUS_DTYPES)
    count = register_count(dtype)
    if address + count > 0x10000:
        raise r.fail(f"register = {address} plus {count} register(s) of {dtype} passes 65535")
    if count > modbus.max_block:
        raise r.fail(f"{dtype} needs {count} registers, more than max_block = {modbus.max_block}")
    manual = r.get("manual", (str, int), None)
    if manual is not None:
        manual = str(manual)
        try:
            number = int(manual, 0) if manual.lower().startswith("0x") else int(manual)
        except ValueError:
            raise r.fail(f"manual = {manual!r} is not a register number") from None
        expected = _manual_number(function, address, modbus.manual_numbering)
        if number != expected:
            raise r.fail(
                f"manual = {manual!r} does not match register = {address} (0x{address:04X}): "
                f"with {modbus.manual_numbering} numbering the manual number is {expected}"
            )
    sentinels: list[int] = list(r.get("not_available", list, []))
    if any(isinstance(v, bool) or not isinstance(v, int) for v in sentinels):
        raise r.fail(f"not_available = {sentinels!r} must be a list of raw integers")
    if modbus.not_available == "max" and (top := max_sentinel(dtype)) is not None:
        sentinels.append(top)
    return Register(
        function=function,
        address=address,
        dtype=dtype,
        word_order=r.choice("word_order", ("big", "little"), "big"),
        scale=r.decimal("scale", 1),
        manual=manual,
        sentinels=tuple(sorted(set(sentinels))),
    )


def _check_overlaps(where: str, points: list[PointSpec]) -> None:
    """Reject two points whose registers overlap (a typo in an address, usually)."""
    spans = sorted(
        (p.source.function, p.source.address, p.source.end, index, p.channel)
        for index, p in enumerate(points, start=1)
        if isinstance(p.source, Register)
    )
    for first, second in itertools.pairwise(spans):
        if first[0] == second[0] and second[1] < first[2]:
            raise ConfigError(
                f"{where}: point #{second[3]} ({second[4]}): register {second[1]} overlaps "
                f"point #{first[3]} ({first[4]}) at {first[1]}..{first[2] - 1}"
            )


def load_models(extra_dirs: Iterable[Path | str] = ()) -> dict[str, MeterModel]:
    """Load every model definition shipped in ``drivers/`` and in ``extra_dirs``.

    A model in an extra folder replaces a shipped model with the same id.

    Args:
        extra_dirs: further folders of ``*.toml`` definitions, in increasing priority.

    Returns:
        Models by id, sorted by id.

    Raises:
        ConfigError: a definition is invalid, or an extra folder does not exist.
    """
    models: dict[str, MeterModel] = {}
    for folder in (data_path("drivers"), *map(Path, extra_dirs)):
        if not folder.is_dir():
            raise ConfigError(f"model folder {folder} does not exist")
        for path in sorted(folder.glob("*.toml")):
            model = load_model(path)
            models[model.id] = model
    return dict(sorted(models.items()))
