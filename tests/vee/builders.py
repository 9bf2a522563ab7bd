"""Build one meter's validation data in memory, for rule tests without a database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from amigate.domain import Meter, MeterRole, Protocol, Quality
from amigate.storage.vee_queries import IntervalColumns, PointColumns, VersionCell
from amigate.vee.context import MICRO, MeterData, MeterFacts

#: Monday 2026-03-02 00:00 Asia/Shanghai, as epoch seconds.
T0 = int(datetime(2026, 3, 1, 16, tzinfo=UTC).timestamp())
STEP = 900
DAY = 86_400


def facts(meter_id: int = 1, *, phases: int = 1, role: MeterRole = MeterRole.CUSTOMER,
          area: str | None = None, **kw: object) -> MeterFacts:  # fmt: skip
    """Facts of a meter: 220 V, Ib 5 A, Imax 60 A unless given."""
    meter = Meter(id=meter_id, address=f"{meter_id:012d}", protocol=Protocol.DLT645_2007,
                  model="test", bus="b", transformer_area=area, role=role)  # fmt: skip
    return MeterFacts(meter=meter, phases=phases, **kw)  # type: ignore[arg-type]


def micro(kwh: float | str) -> int:
    """kWh (or V, A, kW) to micro-units."""
    return int(Decimal(str(kwh)) * MICRO)


def intervals(values: Sequence[float | None], start: int = T0, step: int = STEP) -> IntervalColumns:
    """Version-1 intervals from kWh values; None is a missing interval."""
    cols = IntervalColumns()
    for k, v in enumerate(values):
        cols.ts.append(start + k * step)
        cols.duration.append(step)
        cols.value.append(None if v is None else micro(v))
        cols.quality.append(int(Quality.MISSING if v is None else Quality.ACTUAL))
    return cols


def points(values: Sequence[float], start: int = T0, step: int = STEP) -> PointColumns:
    """Register reads or samples, ``step`` apart."""
    return PointColumns(ts=[start + k * step for k in range(len(values))],
                        value=[micro(v) for v in values])  # fmt: skip


def span(duration: int, kwh: float) -> VersionCell:
    """A gap span (version 2) of ``duration`` seconds carrying ``kwh``."""
    return VersionCell(2, duration, micro(kwh), int(Quality.ACTUAL), None, "gap-span", "amigate")


def data(f: MeterFacts | None = None, *, since: int = T0, until: int | None = None,
         **parts: object) -> MeterData:  # fmt: skip
    """A MeterData with the given parts (intervals=, registers=, samples=, versions=, clock=)."""
    return MeterData(facts=f or facts(), since=since, until=until or since + 60 * DAY,
                     **parts)  # type: ignore[arg-type]
