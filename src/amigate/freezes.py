"""Daily-freeze reads: the registers each meter froze at its local midnight, once a day.

A DL/T 645 meter freezes its energy registers at midnight of its own clock and
keeps the last freezes (``05 06 01 NN`` import total and tariffs, ``05 06 02 NN``
export, ``05 06 00 NN`` the freeze time). Utilities bill monthly and daily
consumption from these, so once a day, after the meter's local midnight, the
latest freeze is read and stored as register reads with source
``DAILY_FREEZE`` at the freeze time the meter reports, with the meter's last
measured clock offset beside it. The reads are idempotent: reading the same
freeze again stores nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from amigate.domain import Meter, RegisterRead, Source
from amigate.errors import AmigateError, DeviceRejected
from amigate.meter_models import MeterModel, PointKind, PointSpec
from amigate.readers import MemoryReader, MeterReader

__all__ = ["FreezeReads"]

_LOG = logging.getLogger(__name__)
Clock = Callable[[], datetime]
#: Failed reads of one day's freeze before it is left until the meter's next day.
_ATTEMPTS = 3


class FreezeReads:
    """When each meter of a bus last had its daily freeze read, and the reads themselves."""

    def __init__(self, bus: str, meters: Sequence[Meter], models: Mapping[str, MeterModel]) -> None:
        """Track the meters of ``bus`` whose model has daily-freeze points."""
        self.bus = bus
        self.points: dict[int, tuple[PointSpec, ...]] = {}
        self.meters: dict[int, Meter] = {}
        self.done: dict[int, date] = {}
        self.failures: dict[int, tuple[date, int]] = {}
        for meter in meters:
            model = models[meter.model]
            points = tuple(p for p in model.points if p.kind is PointKind.DAILY_FREEZE)
            if meter.id is not None and points and model.memory.daily_freezes > 0:
                self.points[meter.id], self.meters[meter.id] = points, meter

    def due(self, now: datetime, available: Callable[[int], bool]) -> list[Meter]:
        """Meters whose freeze of today (their local date) has not been read yet."""
        out = []
        for meter_id, meter in self.meters.items():
            today = now.astimezone(ZoneInfo(meter.timezone)).date()
            if self.done.get(meter_id) != today and available(meter_id):
                out.append(meter)
        return out

    async def read(
        self, meter: Meter, reader: MeterReader, clock: Clock, offset_s: float | None
    ) -> list[RegisterRead]:
        """Read the meter's latest freeze; return its register reads (none on failure).

        A failed read is retried at the next idle times of the bus, up to
        ``_ATTEMPTS`` a day, and logged once: a meter that refuses the request (it
        keeps no such freeze) or keeps failing is left until its next day.
        """
        assert meter.id is not None
        if not isinstance(reader, MemoryReader):
            return []
        tz = ZoneInfo(meter.timezone)
        now = clock()
        today = now.astimezone(tz).date()
        try:
            record = await reader.read_freeze(self.points[meter.id], 1)
        except AmigateError as exc:
            self._failed(meter, today, exc)
            return []
        if record.stamp.date() != today:
            # The meter has not frozen today yet (its clock is behind): try again later.
            _LOG.info("bus %s: meter %s: latest freeze is of %s, not %s yet", self.bus,
                      meter.address, record.stamp.date(), today)  # fmt: skip
            if record.stamp.date() < today - timedelta(days=1):
                self.done[meter.id] = today
            return []
        self.done[meter.id] = today
        # Stored at the time the meter put on it, with its clock offset beside it: the key
        # stays the same however often the freeze is read.
        at = record.stamp.replace(tzinfo=tz).astimezone(UTC)
        return [
            RegisterRead(meter_id=meter.id, channel=channel, read_at=at, value=value,
                         collected_at=now, source=Source.DAILY_FREEZE, clock_offset_s=offset_s)
            for channel, value in sorted(record.values.items())
        ]

    def _failed(self, meter: Meter, today: date, exc: AmigateError) -> None:
        assert meter.id is not None
        day, count = self.failures.get(meter.id, (today, 0))
        count = count + 1 if day == today else 1
        self.failures[meter.id] = (today, count)
        if isinstance(exc, DeviceRejected) or count >= _ATTEMPTS:
            self.done[meter.id] = today
            _LOG.warning("bus %s: meter %s: daily freeze not read (%s); next try on its next "
                         "day", self.bus, meter.address, exc)  # fmt: skip
        elif count == 1:
            _LOG.warning("bus %s: meter %s: daily freeze not read (%s); trying again",
                         self.bus, meter.address, exc)  # fmt: skip
