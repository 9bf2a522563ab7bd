"""A simulated Modbus meter: register contents computed from a model definition and physics.

The meter reads the same definition the driver does: each point's value comes
from :class:`MeterPhysics` (energy integrates the load shape, instantaneous values
agree with it) and is encoded with the point's data type, word order and scale.
Faults: no reply, an exception code on every request, registers a variant lacks
(exception 2), firmware with the wrong word order, a frozen energy counter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from amigate.codecs.modbus_values import encode_value
from amigate.errors import ConfigError
from amigate.meter_models import MeterModel, PointSpec, Register
from amigate.simulators.load_shape import LoadShape, phase_split
from amigate.simulators.physics import Instant, MeterPhysics, RegisterMode

__all__ = ["FAULTS", "ModbusSimMeter", "apply_fault", "channel_values", "register_spans"]

Clock = Callable[[], datetime]
#: Meter units from the channel units the physics produces.
_FROM_CANONICAL = {"Wh": Decimal(1000), "W": Decimal(1000), "var": Decimal(1000)}
_PHASE_CHANNELS = {
    "voltage": ("32.7.0", "52.7.0", "72.7.0"),
    "current": ("31.7.0", "51.7.0", "71.7.0"),
    "power": ("21.7.0", "41.7.0", "61.7.0"),
    "pf": ("33.7.0", "53.7.0", "73.7.0"),
    "import": ("21.8.0", "41.8.0", "61.8.0"),
    "export": ("22.8.0", "42.8.0", "62.8.0"),
}
_CENT = Decimal("0.01")


def channel_values(physics: MeterPhysics, instant: Instant) -> dict[str, Decimal]:
    """Every channel a Modbus model may define, in channel units (kW, kWh, V, A, Hz).

    Per-phase energies split the totals by the load's phase shares (to 0.01 kWh).
    """
    imports = physics.import_kwh()[0]
    export = physics.export_kwh()
    pf = instant.power_factor
    total_kw = instant.powers[0]
    tan = (1 / pf**2 - 1).sqrt() if pf else Decimal(0)
    values = {
        "1.7.0": total_kw,
        "3.7.0": (total_kw * tan).quantize(Decimal("0.0001"), ROUND_HALF_EVEN),
        "13.7.0": pf,
        "14.7.0": instant.frequency,
        "1.8.0": imports,
        "2.8.0": export,
        "15.8.0": imports + export,
    }
    shares = phase_split(physics.model.phases)
    for index, share in enumerate(shares):
        values[_PHASE_CHANNELS["voltage"][index]] = instant.voltages[index]
        values[_PHASE_CHANNELS["current"][index]] = abs(instant.currents[index])
        values[_PHASE_CHANNELS["power"][index]] = instant.powers[index + 1]
        values[_PHASE_CHANNELS["pf"][index]] = pf
        part = Decimal(repr(share))
        values[_PHASE_CHANNELS["import"][index]] = (imports * part).quantize(_CENT)
        values[_PHASE_CHANNELS["export"][index]] = (export * part).quantize(_CENT)
    return values


def register_spans(model: MeterModel) -> list[tuple[int, int]]:
    """The register ranges the meter defines: its points, joined across small gaps.

    Gaps up to the model's ``max_gap`` read as zeros (unassigned registers a real
    meter answers for); anything further apart is not defined and answers
    exception 2, so a read plan that overreaches fails as on a real meter.

    Returns:
        ``(first address, count)`` pairs in address order.
    """
    if model.modbus is None:
        raise ConfigError(f"model {model.id} is not a Modbus model")
    regs = sorted(
        (p.source.address, p.source.end) for p in model.points if isinstance(p.source, Register)
    )
    spans: list[list[int]] = []
    for start, end in regs:
        if spans and start - spans[-1][1] <= model.modbus.max_gap:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [(start, end - start) for start, end in spans]


@dataclass
class ModbusSimMeter:
    """One simulated Modbus meter behind a device ID.

    Attributes:
        model: the meter model definition.
        device_id: the Modbus ID it answers to.
        physics: what it measures.
        clock: the simulation time.
        silent: no reply at all (a dead or disconnected meter).
        exception_code: answer every request with this exception code.
        unsupported: channels whose registers this meter lacks (exception 2).
        swapped_words: firmware with the wrong word order for multi-register values.
    """

    model: MeterModel
    device_id: int
    physics: MeterPhysics
    clock: Clock
    silent: bool = False
    exception_code: int | None = None
    unsupported: set[str] = field(default_factory=set)
    swapped_words: bool = False

    @classmethod
    def build(
        cls,
        model: MeterModel,
        device_id: int,
        *,
        clock: Clock,
        load: Mapping[str, Any] | None = None,
        initial_kwh: Decimal = Decimal("1234.56"),
        start: datetime | None = None,
    ) -> ModbusSimMeter:
        """Create a meter with a load shape (a scenario table, default residential).

        Raises:
            ConfigError: not a Modbus model, an ID outside 1..247, a bad load shape.
        """
        if model.modbus is None:
            raise ConfigError(f"model {model.id} is not a Modbus model")
        if not 1 <= device_id <= 247:
            raise ConfigError(f"Modbus device ID {device_id} is outside 1..247")
        shape = LoadShape.from_mapping(load or {}, seed=device_id)
        physics = MeterPhysics(
            model=model, shape=shape, start=start or clock(), initial_kwh=initial_kwh,
            seed=device_id,
        )  # fmt: skip
        return cls(model=model, device_id=device_id, physics=physics, clock=clock)

    @property
    def frozen(self) -> bool:
        """True while the energy counter is frozen."""
        return self.physics.mode is RegisterMode.STOPPED

    @frozen.setter
    def frozen(self, value: bool) -> None:
        self.physics.advance(self.clock())  # what was counted so far stays counted
        self.physics.mode = RegisterMode.STOPPED if value else RegisterMode.NORMAL

    def values(self) -> dict[str, Decimal]:
        """The value of each of the model's channels now, in channel units."""
        now = self.clock()
        self.physics.advance(now)
        every = channel_values(self.physics, self.physics.instant(now))
        wanted = {p.channel for p in self.model.points}
        missing = wanted - set(every)
        if missing:
            raise ConfigError(
                f"model {self.model.id}: the simulator has no value for {', '.join(missing)}"
            )
        return {channel: every[channel] for channel in wanted}

    def registers(self) -> dict[int, int]:
        """The register words now, by wire address (function codes share one space)."""
        values = self.values()
        words: dict[int, int] = {}
        for point in self.model.points:
            if isinstance(point.source, Register):
                for offset, word in enumerate(self._encode(point, values[point.channel])):
                    words[point.source.address + offset] = word
        return words

    def _encode(self, point: PointSpec, value: Decimal) -> list[int]:
        reg = point.source
        assert isinstance(reg, Register)
        value *= _FROM_CANONICAL.get(point.unit, Decimal(1))
        order = reg.word_order
        if self.swapped_words:
            order = "little" if order == "big" else "big"
        return encode_value(value, reg.dtype, order, scale=reg.scale)

    def rejects(self, address: int, count: int) -> int | None:
        """Return the exception code for a read of ``count`` registers at ``address``, if any."""
        if self.exception_code is not None:
            return self.exception_code
        for point in self.model.points:
            reg = point.source
            if (
                point.channel in self.unsupported
                and isinstance(reg, Register)
                and reg.address < address + count
                and address < reg.end
            ):
                return 2
        return None


#: Faults a simulated Modbus meter can show, for scenarios and the ``sim`` command.
FAULTS = ("no_reply", "exception", "unsupported", "swapped_words", "frozen_counter")


def apply_fault(meter: ModbusSimMeter, kind: str, argument: str = "") -> None:
    """Make ``meter`` show a fault.

    Args:
        meter: the meter.
        kind: ``no_reply``, ``exception`` (argument: the code, default 4),
            ``unsupported`` (argument: the channel whose register is missing),
            ``swapped_words`` or ``frozen_counter``.
        argument: the fault's parameter, where it has one.

    Raises:
        ConfigError: unknown kind or a bad argument.
    """
    if kind == "no_reply":
        meter.silent = True
    elif kind == "exception":
        try:
            code = int(argument or "4")
        except ValueError:
            raise ConfigError(f"fault exception: code {argument!r} is not a number") from None
        if code not in (1, 2, 3, 4, 5, 6, 7, 8, 10, 11):
            raise ConfigError(f"fault exception: {code} is not a Modbus exception code")
        meter.exception_code = code
    elif kind == "unsupported":
        if argument not in {p.channel for p in meter.model.points}:
            raise ConfigError(f"fault unsupported: model {meter.model.id} has no {argument!r}")
        meter.unsupported.add(argument)
    elif kind == "swapped_words":
        meter.swapped_words = True
    elif kind == "frozen_counter":
        meter.frozen = True
    else:
        raise ConfigError(f"fault {kind!r} is not one of {', '.join(FAULTS)}")
