"""Meter readers: what a bus worker asks of one meter, over DL/T 645 or Modbus.

A reader reads the points of one read cycle. DL/T 645 readers can also read the
meter's own memory: load-profile records (interval register values kept for the
last days) and daily freezes (registers frozen at local midnight), which is what
backfill and daily-freeze reads are made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol as TypingProtocol
from typing import runtime_checkable

from amigate.clocks import Dlt645Clock
from amigate.codecs import Dlt645Version, find_di
from amigate.codecs.dlt645_catalogue import LOAD_PROFILE_CLASSES
from amigate.domain import Meter
from amigate.drivers.dlt645 import Dlt645Client
from amigate.drivers.modbus import ModbusMeter
from amigate.errors import DataError
from amigate.meter_models import DataId, MeterModel, PointKind, PointSpec, Poll, Register
from amigate.normalize import ChannelPolicy

__all__ = [
    "Dlt645Reader",
    "FreezeRecord",
    "LoadRecord",
    "MemoryReader",
    "MeterReader",
    "ModbusReader",
    "channel_policy",
    "cycle_points",
    "load_profile_channels",
    "register_capacity",
]

#: Margin on the nameplate power before an increase counts as implausible.
_POWER_MARGIN = Decimal("1.5")
#: The name of the time stamp that starts each load-profile record.
_RECORD_TIME = "load record time"


class MeterReader(TypingProtocol):
    """Reads points of one meter through a driver."""

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Decimal | None]:
        """Return the value of each point by channel (``None``: the meter has no value)."""
        ...


@dataclass(frozen=True)
class LoadRecord:
    """One load-profile record: register values at a time of the meter's clock.

    Attributes:
        stamp: the record time, naive local time of the meter clock.
        values: register values by channel code (energy channels only).
    """

    stamp: datetime
    values: dict[str, Decimal]


@dataclass(frozen=True)
class FreezeRecord:
    """One daily freeze: registers frozen at the meter's local midnight.

    Attributes:
        stamp: the freeze time, naive local time of the meter clock.
        values: register values by channel code (``1.8.0``, ``1.8.1`` …, ``2.8.0``).
    """

    stamp: datetime
    values: dict[str, Decimal]


@runtime_checkable
class MemoryReader(TypingProtocol):
    """A reader of a meter that keeps load-profile records and daily freezes."""

    async def read_load_profile(
        self, point: PointSpec, since: datetime, count: int
    ) -> list[LoadRecord]:
        """Read up to ``count`` load-profile records from ``since`` (meter local time)."""
        ...

    async def read_freeze(self, points: Sequence[PointSpec], nth: int) -> FreezeRecord:
        """Read the ``nth`` latest daily freeze (1 = last midnight) of the given points."""
        ...


class Dlt645Reader(Dlt645Clock):
    """A DL/T 645 meter behind a shared :class:`Dlt645Client`: one read per point."""

    def __init__(self, client: Dlt645Client, address: str) -> None:
        """Read the meter at ``address`` through ``client``."""
        self.client = client
        self.address = address

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Decimal | None]:
        """Read each point; the first failure ends the meter's turn (a dead meter costs one)."""
        out: dict[str, Decimal | None] = {}
        for point in points:
            assert isinstance(point.source, DataId)
            reply = await self.client.read(self.address, point.source.at())
            value = next((v.value for v in reply.values if isinstance(v.value, Decimal)), None)
            out[point.channel] = value
        return out

    async def read_load_profile(
        self, point: PointSpec, since: datetime, count: int
    ) -> list[LoadRecord]:
        """Read up to ``count`` records from ``since`` ("records from a given time", 06xx0001).

        Raises:
            DeviceRejected: the meter has no records from that time.
            DataError: a record could not be decoded.
        """
        assert isinstance(point.source, DataId)
        reply = await self.client.read(
            self.address, point.source.at(), blocks=count, since=since.replace(second=0)
        )
        records: list[LoadRecord] = []
        for value in reply.values:
            if value.name == _RECORD_TIME:
                if not isinstance(value.value, datetime):
                    raise DataError(f"meter {self.address}: load record time {value.value!r}")
                records.append(LoadRecord(stamp=value.value, values={}))
            elif records and value.channel and isinstance(value.value, Decimal):
                records[-1].values[value.channel] = value.value
        return records

    async def read_freeze(self, points: Sequence[PointSpec], nth: int) -> FreezeRecord:
        """Read the ``nth`` latest daily freeze of ``points`` (time stamp point included).

        Raises:
            DeviceRejected: the meter has no such freeze.
            DataError: the freeze has no time stamp.
        """
        stamp: datetime | None = None
        values: dict[str, Decimal] = {}
        for point in points:
            assert isinstance(point.source, DataId)
            reply = await self.client.read(self.address, point.source.at(nth))
            for value in reply.values:
                if isinstance(value.value, datetime):
                    stamp = value.value
                elif isinstance(value.value, Decimal) and value.channel:
                    values[value.channel] = value.value
        if stamp is None:
            raise DataError(f"meter {self.address}: daily freeze {nth} has no time stamp")
        return FreezeRecord(stamp=stamp, values=values)


class ModbusReader:
    """A Modbus meter: the whole cycle in as few block reads as the model allows."""

    def __init__(self, meter: ModbusMeter) -> None:
        """Read through ``meter``."""
        self.meter = meter

    async def read(self, points: Sequence[PointSpec]) -> dict[str, Decimal | None]:
        """Poll the points."""
        return {v.channel: v.value for v in await self.meter.poll(points)}


def load_profile_channels(point: PointSpec) -> frozenset[str]:
    """The energy channels whose register values a load-profile point's records carry."""
    assert isinstance(point.source, DataId)
    cls = (point.source.di >> 16) & 0xFF
    classes = LOAD_PROFILE_CLASSES if cls == 0 else LOAD_PROFILE_CLASSES[cls - 1 : cls]
    return frozenset(
        f.channel for fields in classes for f in fields
        if f.channel and f.unit in ("kWh", "kvarh")
    )  # fmt: skip


def cycle_points(model: MeterModel, *, instantaneous: bool = True) -> tuple[PointSpec, ...]:
    """The points read every cycle: energy registers, and instantaneous values if asked."""
    kinds = {PointKind.ENERGY} | ({PointKind.INSTANTANEOUS} if instantaneous else set())
    return tuple(p for p in model.points if p.kind in kinds and p.poll is Poll.CYCLE)


def register_capacity(model: MeterModel, point: PointSpec) -> Decimal | None:
    """The value at which an energy register wraps to zero, when the model tells.

    DL/T 645: ``10 ** integer digits`` of the catalogued format (``XXXXXX.XX`` →
    1,000,000). Modbus unsigned integers: ``2 ** bits × scale``. Floats: never.
    """
    source = point.source
    if isinstance(source, DataId):
        version = Dlt645Version(model.protocol)
        spec = find_di(source.at(), version)
        if spec is None or not spec.fields:
            return None
        digits = spec.fields[0].format.split(".")[0]
        return Decimal(10) ** len(digits) if set(digits) == {"X"} else None
    assert isinstance(source, Register)
    if source.dtype.startswith("uint"):
        return Decimal(2) ** int(source.dtype[4:]) * source.scale
    return None


def channel_policy(meter: Meter, model: MeterModel, point: PointSpec) -> ChannelPolicy:
    """Multiplier, register capacity and the plausible power of one energy register."""
    voltage = meter.rated_voltage or model.rated.voltage_v
    current = meter.max_current or model.rated.max_current_a
    max_kw = voltage * current * model.phases * _POWER_MARGIN / 1000
    if point.unit == "Wh":
        max_kw *= 1000
    return ChannelPolicy(
        multiplier=meter.multiplier, capacity=register_capacity(model, point), max_kw=max_kw
    )
