"""Meter clocks: periodic clock checks, flagging of meters whose clock is off, time sync.

A clock check reads the meter's date (DL/T 645 ``04000101``) and time (``04000102``)
and compares them with the collection clock at the midpoint of the time request (the
meter answers somewhere within the round trip; the midpoint halves the error). The
meter shows whole seconds (truncated), so half a second is added to its reading.

Every check is stored (``clock_checks``). A meter whose offset exceeds the threshold
gets one ``clock_offset`` anomaly (severity warning) per episode: its evidence is
updated at each further check, and its end is set at the first check back within the
threshold. Intervals of that meter inside the episode are the flagged ones (original
intervals cannot carry reason codes in this storage model).

When a meter of a bus is off by more than the threshold but within the sync limit,
one DL/T 645 broadcast time set (08H) is sent, at most once per ``sync_interval`` per
bus; meters off by more than the limit would refuse it and are reported (WARNING,
once per episode). The meters that were off are checked again at the next cycle; that
check is stored ``corrected`` when the offset is back within the threshold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from amigate.codecs import Dlt645Version
from amigate.domain import Anomaly, ClockCheck, Meter, Severity
from amigate.drivers.dlt645 import Dlt645Client
from amigate.errors import AmigateError, DataError, StorageError
from amigate.fleet import ReadPlan
from amigate.metrics import Metrics
from amigate.storage.store import Store

__all__ = [
    "CLOCK_OFFSET",
    "ClockKeeper",
    "ClockPolicy",
    "ClockReader",
    "Dlt645Clock",
    "TimeSyncer",
    "read_dlt645_clock",
]

_LOG = logging.getLogger(__name__)
#: Anomaly kind of a meter clock off by more than the threshold.
CLOCK_OFFSET = "clock_offset"
#: Date (YYMMDDWW) and time (hhmmss) identifiers: 2007, and 1997.
DI_DATE, DI_TIME = 0x04000101, 0x04000102
DI_DATE_1997, DI_TIME_1997 = 0xC010, 0xC011
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ClockPolicy:
    """How meter clocks are checked and corrected.

    Attributes:
        check_interval: time between two clock checks of a meter.
        threshold_s: an offset above this (absolute, seconds) is flagged and synced.
        sync_limit_s: largest offset a broadcast time sync is used for (0: never sync).
            Meters typically accept at most ±5 min once a day
            (/work/shared/references/dlt645.md §4.2 08H, §9 step 7).
        sync_interval: at most one broadcast time sync per bus in this time.
    """

    check_interval: timedelta = timedelta(days=1)
    threshold_s: float = 60.0
    sync_limit_s: float = 300.0
    sync_interval: timedelta = timedelta(days=1)

    @classmethod
    def from_settings(cls, settings: Any) -> ClockPolicy:
        """The policy of :class:`amigate.config.Settings`."""
        return cls(
            check_interval=timedelta(hours=settings.clock_check_hours),
            threshold_s=settings.clock_offset_threshold_s,
            sync_limit_s=settings.clock_sync_limit_s,
        )


@runtime_checkable
class ClockReader(Protocol):
    """A meter reader that can read the meter's clock."""

    async def read_clock(self, tz: ZoneInfo, clock: Clock) -> tuple[datetime, float]:
        """Return ``(checked_at, offset_s)``: when (UTC) and how far the meter clock is ahead."""
        ...


@runtime_checkable
class TimeSyncer(Protocol):
    """A reader whose bus can take a broadcast time sync."""

    async def broadcast_time(self, when: datetime) -> None:
        """Set every meter of the bus to ``when`` (naive local time)."""
        ...


Read = Callable[[int], Awaitable[Any]]


def _first(reply: Any) -> Any:
    return next((v.value for v in reply.values), None)


def _time_of_day(value: Any) -> time:
    if isinstance(value, datetime):
        return value.time()
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        return time.fromisoformat(value)
    raise DataError(f"meter time {value!r} is not a time of day")


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    raise DataError(f"meter date {value!r} is not a date")


async def read_dlt645_clock(
    read: Read, tz: ZoneInfo, clock: Clock, *, v1997: bool = False
) -> tuple[datetime, float]:
    """Read date and time through ``read(di)`` and return ``(checked_at, offset_s)``.

    ``checked_at`` is the midpoint of the time request by ``clock``; a date read just
    before the meter's midnight is read again when the time shows just after it.
    """
    di_date, di_time = (DI_DATE_1997, DI_TIME_1997) if v1997 else (DI_DATE, DI_TIME)
    day = _date(_first(await read(di_date)))
    before = clock()
    shown = _time_of_day(_first(await read(di_time)))
    after = clock()
    if shown < time(0, 0, 10):  # the meter's date may have turned between the two reads
        day = _date(_first(await read(di_date)))
    checked_at = before + (after - before) / 2
    meter_local = datetime.combine(day.date(), shown) + timedelta(seconds=0.5)
    offset = (meter_local.replace(tzinfo=tz) - checked_at).total_seconds()
    return checked_at.astimezone(UTC), offset


@dataclass
class _MeterClock:
    next_check: datetime | None = None
    offset_s: float | None = None
    checked_at: datetime | None = None
    episode: Anomaly | None = None
    synced: bool = False  # a sync was sent since the last check
    limit_warned: bool = False


class Dlt645Clock:
    """Clock check and time sync of a DL/T 645 reader (``client`` and ``address``)."""

    client: Dlt645Client
    address: str

    async def read_clock(self, tz: ZoneInfo, clock: Clock) -> tuple[datetime, float]:
        """Read the meter's date and time: ``(checked_at, offset_s)``."""
        v1997 = self.client.version is Dlt645Version.V1997
        return await read_dlt645_clock(
            lambda di: self.client.read(self.address, di), tz, clock, v1997=v1997
        )

    async def broadcast_time(self, when: datetime) -> None:
        """Broadcast a time set (08H) to every meter on this reader's bus."""
        await self.client.time_sync(when)


class ClockKeeper:
    """The clock checks and time syncs of the meters of one bus (run by a bus worker)."""

    def __init__(
        self, bus: str, policy: ClockPolicy, *, store: Store, plan: ReadPlan,
        metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        """Keep the clocks of bus ``bus``, storing checks and episodes in ``store``."""
        self.bus = bus
        self.policy = policy
        self.store = store
        self.plan = plan
        self.metrics = metrics
        self.meters: dict[int, _MeterClock] = {}
        self.last_sync: datetime | None = None
        self.syncs = 0

    async def restore(self, ids: Sequence[int]) -> None:
        """Resume from the stored latest checks and open ``clock_offset`` episodes."""
        checks = await asyncio.to_thread(self.store.latest_clock_checks, ids)
        episodes = await asyncio.to_thread(self.store.open_anomalies, CLOCK_OFFSET, ids)
        for meter_id, check in checks.items():
            state = self.meters.setdefault(meter_id, _MeterClock())
            state.offset_s, state.checked_at = check.offset_s, check.checked_at
            state.next_check = check.checked_at + self.policy.check_interval
        for episode in episodes:
            if episode.meter_id is not None:
                self.meters.setdefault(episode.meter_id, _MeterClock()).episode = episode

    def due(self, meter_id: int, now: datetime) -> bool:
        """Whether the meter's clock is to be checked now."""
        state = self.meters.setdefault(meter_id, _MeterClock())
        return state.next_check is None or now >= state.next_check

    def off(self, offset_s: float) -> bool:
        """Whether an offset is above the threshold."""
        return abs(offset_s) > self.policy.threshold_s

    def checked(
        self, meter: Meter, checked_at: datetime, offset_s: float
    ) -> tuple[ClockCheck, Anomaly | None, Anomaly | None]:
        """Take one check.

        Returns:
            The check to store, an episode to create (or ``None``), and an existing
            episode to update (or ``None``; its ``end`` is set when it is over).
        """
        assert meter.id is not None
        state = self.meters.setdefault(meter.id, _MeterClock())
        corrected = state.synced and not self.off(offset_s)
        state.synced = False
        state.offset_s, state.checked_at = offset_s, checked_at
        state.next_check = checked_at + self.policy.check_interval
        check = ClockCheck(
            meter_id=meter.id, checked_at=checked_at, offset_s=offset_s, corrected=corrected
        )
        evidence = {
            "offset_s": round(offset_s, 3), "checked_at": checked_at.isoformat(),
            "threshold_s": self.policy.threshold_s, "bus": self.bus, "address": meter.address,
        }  # fmt: skip
        if self.policy.sync_limit_s and abs(offset_s) <= self.policy.sync_limit_s:
            state.limit_warned = False
        if not self.off(offset_s):
            if state.episode is None:
                return check, None, None
            ended = state.episode
            state.episode = None
            ev = {**ended.evidence, **evidence, "cleared_at": checked_at.isoformat()}
            if corrected:
                ev["corrected"] = True
            return check, None, replace(ended, evidence=ev, end=checked_at)
        if state.episode is None:
            first = {**evidence, "first_offset_s": evidence["offset_s"], "checks": 1}
            new = Anomaly(kind=CLOCK_OFFSET, start=checked_at, severity=Severity.WARNING,
                          meter_id=meter.id, evidence=first)  # fmt: skip
            return check, new, None
        old = state.episode
        ev = {**old.evidence, **evidence, "checks": int(old.evidence.get("checks", 1)) + 1}
        state.episode = replace(old, evidence=ev)
        return check, None, state.episode

    def opened(self, meter_id: int, anomaly: Anomaly) -> None:
        """An episode was stored (with its id)."""
        self.meters.setdefault(meter_id, _MeterClock()).episode = anomaly

    def sync_plan(
        self, meters: Sequence[Meter], now: datetime
    ) -> tuple[list[Meter], list[Meter]]:
        """Which meters a broadcast sync would correct now, and which are beyond the limit.

        The first list is empty when no sync is to be sent (none within the limit,
        syncing disabled, or one was sent less than ``sync_interval`` ago).
        """
        within: list[Meter] = []
        beyond: list[Meter] = []
        for meter in meters:
            state = self.meters.get(meter.id or -1)
            if state is None or state.offset_s is None or not self.off(state.offset_s):
                continue
            if self.policy.sync_limit_s and abs(state.offset_s) <= self.policy.sync_limit_s:
                within.append(meter)
            else:
                beyond.append(meter)
        if not self.policy.sync_limit_s:
            within = []
        if self.last_sync is not None and now - self.last_sync < self.policy.sync_interval:
            within = []
        return within, beyond

    def offset(self, meter_id: int) -> float | None:
        """The meter's latest offset."""
        state = self.meters.get(meter_id)
        return None if state is None else state.offset_s

    def warn_beyond(self, meters: Sequence[Meter]) -> list[Meter]:
        """Of ``meters``, those not yet reported as beyond the sync limit (now reported)."""
        out = []
        for meter in meters:
            state = self.meters.setdefault(meter.id or -1, _MeterClock())
            if not state.limit_warned:
                state.limit_warned = True
                out.append(meter)
        return out

    def synced(self, meters: Sequence[Meter], now: datetime) -> None:
        """A sync was sent: check ``meters`` again at the next cycle."""
        self.last_sync = now
        self.syncs += 1
        for meter in meters:
            state = self.meters.setdefault(meter.id or -1, _MeterClock())
            state.synced = True
            state.next_check = now

    async def check(
        self, meter: Meter, reader: object, clock: Clock, budget: float | None
    ) -> None:
        """Read the meter clock, store the check, open/extend/end its clock_offset episode.

        A failed check is logged (DEBUG) and tried again an hour later (by default).
        """
        assert meter.id is not None
        if not isinstance(reader, ClockReader):
            return
        per_request = self.plan.timeout_s or 2.0
        budget = budget or per_request * (self.plan.retries + 1) * 3 + 1.0
        try:
            async with asyncio.timeout(budget):
                checked_at, offset = await reader.read_clock(ZoneInfo(meter.timezone), clock)
        except asyncio.CancelledError:
            raise
        except (AmigateError, TimeoutError) as exc:
            _LOG.debug("bus %s: meter %s: clock check failed: %s",
                       self.bus, meter.address, exc)  # fmt: skip
            self._retry_later(meter.id, clock())
            return
        except Exception:  # a bug: log with traceback, never end the bus worker
            _LOG.exception("bus %s: meter %s: clock check failed", self.bus, meter.address)
            self._retry_later(meter.id, clock())
            return
        check, new, update = self.checked(meter, checked_at, offset)
        if self.metrics is not None:
            self.metrics.set_clock_offset(self.bus, meter.address, offset)
        if self.off(offset):
            _LOG.debug("bus %s: meter %s clock off by %+.1f s",
                       self.bus, meter.address, offset)  # fmt: skip
        try:
            await asyncio.to_thread(self.store.ingest_clock_checks, [check])
            if new is not None:
                (anomaly_id,) = await asyncio.to_thread(self.store.add_anomalies, [new])
                self.opened(meter.id, replace(new, id=anomaly_id))
            if update is not None and update.id is not None:
                await asyncio.to_thread(
                    self.store.update_anomaly, update.id, evidence=update.evidence, end=update.end
                )
        except StorageError as exc:
            _LOG.warning("bus %s: meter %s: clock check not stored: %s",
                         self.bus, meter.address, exc)  # fmt: skip

    def _retry_later(self, meter_id: int, now: datetime) -> None:
        state = self.meters.setdefault(meter_id, _MeterClock())
        state.next_check = now + self.policy.check_interval / 24

    async def sync(
        self, meters: Sequence[Meter], readers: Mapping[int, object], now: datetime
    ) -> None:
        """Send one broadcast time sync when meters are off within the limit (once a day)."""
        dlt = [m for m in meters
               if m.id is not None and isinstance(readers.get(m.id), TimeSyncer)]  # fmt: skip
        if not dlt:
            return
        within, beyond = self.sync_plan(dlt, now)
        limit = self.policy.sync_limit_s
        for meter in self.warn_beyond(beyond):
            assert meter.id is not None
            _LOG.warning(
                "bus %s: meter %s clock is off by %+.0f s, beyond the %g s a broadcast time "
                "sync corrects: not corrected, set it on site", self.bus, meter.address,
                self.offset(meter.id) or 0.0, limit,
            )  # fmt: skip
        if not within:
            return
        zones = {m.timezone for m in within}
        if len(zones) > 1:
            _LOG.warning("bus %s: meters with clocks off use different timezones %s: "
                         "no broadcast time sync", self.bus, sorted(zones))  # fmt: skip
            self.last_sync = now  # do not retry before tomorrow
            return
        syncer = readers[within[0].id or -1]
        assert isinstance(syncer, TimeSyncer)
        when = now.astimezone(ZoneInfo(zones.pop()))
        when = (when + timedelta(milliseconds=500)).replace(microsecond=0, tzinfo=None)
        try:
            await syncer.broadcast_time(when)
        except AmigateError as exc:
            _LOG.warning("bus %s: broadcast time sync failed: %s", self.bus, exc)
            return
        largest = max((self.offset(m.id or -1) or 0.0 for m in within), key=abs)
        _LOG.info(
            "bus %s: broadcast time sync to %s: %d meter(s) off by more than %g s, "
            "largest %+.1f s (%s)", self.bus, when.isoformat(sep=" "), len(within),
            self.policy.threshold_s, largest, ", ".join(m.address for m in within),
        )  # fmt: skip
        self.synced([*within, *beyond], now)
