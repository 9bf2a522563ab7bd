"""Bus workers: read the meters of one bus every interval, normalize, store.

One :class:`BusWorker` per serial port or TCP endpoint; its meters are read one
after the other (one request in flight on a half-duplex bus) while the workers
of different buses run concurrently. Reads start just after each interval
boundary, spread over ``plan.spread_s`` so a bus is not hammered at :00.

A meter that stops answering is isolated (``amigate.availability``): its interval
slots are stored as MISSING and, when it answers again, the energy across the gap
is kept as a span. Errors that are not ``AmigateError`` are logged with a
traceback and treated as a failure of that meter, never swallowed silently.

The time a bus has left after a cycle goes to the daily freezes that are due
(``amigate.freezes``) and then to backfill from meter memory (``amigate.backfill``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from amigate.availability import Availability
from amigate.backfill import Backfiller
from amigate.clocks import ClockKeeper, ClockPolicy
from amigate.domain import Anomaly, Interval, Meter, RegisterRead, Sample, Source
from amigate.errors import AmigateError, ReadTimeout, StorageUnavailable
from amigate.fleet import BusConfig
from amigate.freezes import FreezeReads
from amigate.meter_models import MeterModel, PointKind, PointSpec
from amigate.metrics import Metrics
from amigate.normalize import (
    SPAN_REASON,
    Outcome,
    SeriesNormalizer,
    floor_boundary,
    sample_multiplier,
)
from amigate.readers import (
    Dlt645Reader,
    MeterReader,
    ModbusReader,
    channel_policy,
    cycle_points,
    register_capacity,
)
from amigate.spool import Row, Spool, drain
from amigate.storage.series_queries import poll_reads_since
from amigate.storage.store import Store

__all__ = [
    "BusWorker",
    "CycleReport",
    "Dlt645Reader",
    "MeterReader",
    "ModbusReader",
    "cycle_points",
    "register_capacity",
]

_LOG = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class CycleReport:
    """What one cycle did (for tests and metrics)."""

    boundary: datetime
    ok: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    intervals: int = 0
    anomalies: int = 0


class BusWorker:
    """Reads the meters of one bus on the interval schedule and stores what it reads."""

    def __init__(
        self,
        bus: BusConfig,
        meters: Sequence[Meter],
        readers: Mapping[int, MeterReader],
        store: Store,
        models: Mapping[str, MeterModel],
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        meter_budget_s: float | None = None,
        metrics: Metrics | None = None,
        spool: Spool | None = None,
        clock_policy: ClockPolicy | None = None,
    ) -> None:
        """Set up the worker (nothing is read until :meth:`run` or :meth:`poll_cycle`).

        Args:
            bus: the bus and its read plan.
            meters: its meters, as stored (with ids).
            readers: a reader per meter id.
            store: where reads, intervals, samples and anomalies go.
            models: meter models by id.
            clock: UTC now (tests pass a manual clock).
            sleep: how to wait (tests pass one that advances the manual clock).
            meter_budget_s: the longest one meter's turn may take, a backstop behind
                the drivers' own timeouts (default: from the plan and the points).
            metrics: where reads, latency and availability are reported.
            spool: where each cycle's rows are kept (fsync'ed) until the database has
                them (default: in memory, bounded; lost on a crash).
            clock_policy: how meter clocks are checked and synced (DL/T 645 readers only).
        """
        self.bus = bus
        self.plan = bus.plan
        self.interval = timedelta(minutes=bus.plan.interval_minutes)
        self.meters = [m for m in meters if m.id is not None]
        self.readers = readers
        self.store = store
        self.models = models
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self._budget = meter_budget_s
        self.metrics = metrics
        self.spool = spool if spool is not None else Spool(None, max_rows=100_000, name=bus.name)
        self._outage: datetime | None = None  # since when the database is away
        self.restored = False  # series resumed from the database
        self._unrestored_warned = False
        self.clocks = ClockKeeper(bus.name, clock_policy or ClockPolicy(), store=store,
                                  metrics=metrics, plan=bus.plan)  # fmt: skip
        self.freezes = FreezeReads(bus.name, self.meters, models)
        self.backfill = Backfiller(
            bus.name, self.meters, models, store, self.interval, metrics=metrics,
            offset=self.clocks.offset, threshold_s=self.clocks.policy.threshold_s,
        )  # fmt: skip
        self._stopping = asyncio.Event()
        ids = [m.id for m in self.meters if m.id is not None]
        self.availability = Availability(bus.name, bus.plan, ids, self._clock)
        self.health = self.availability.health
        self._series: dict[tuple[int, str], SeriesNormalizer] = {}
        self._points: dict[int, tuple[PointSpec, ...]] = {}
        # Rows of the cycle in progress, stored together at its end.
        self._reads: list[RegisterRead] = []
        self._intervals: list[Interval] = []
        self._samples: list[Sample] = []
        self._anomalies: list[Anomaly] = []
        #: Meters whose reads can be read again from their memory (dropped first when full).
        self.backfillable = frozenset(self.backfill.meters)
        for meter in self.meters:
            assert meter.id is not None
            model = models[meter.model]
            self._points[meter.id] = cycle_points(model, instantaneous=self.plan.instantaneous)
            for point in self._points[meter.id]:
                if point.kind is PointKind.ENERGY:
                    self._series[(meter.id, point.channel)] = SeriesNormalizer(
                        meter_id=meter.id, channel=point.channel, interval=self.interval,
                        policy=channel_policy(meter, model, point),
                    )  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------

    async def restore(self) -> None:
        """Resume each series from what is stored (after a restart), spooled rows included.

        Each series is anchored at the read that ended its last stored interval, and
        the polled reads stored after it (collected while the database was away) are
        normalized now, so their intervals and gaps are not lost. The same happens
        whenever the database returns after an outage, or after a full spool dropped
        rows: a hole left by dropped reads is then bridged by a span from the last
        stored read before it to the first one after it, which backfill fills from
        the meter's load profile (a meter without memory keeps missing intervals and
        the span). The rows derived here are stored directly, not spooled: they can
        be derived again from the database, and a spool full of them could not hold
        the reads that are their source.

        Raises:
            StorageUnavailable: the database is away.
        """
        if len(self.spool):
            await self._drain()
            if self._outage is not None:
                raise StorageUnavailable("the spooled rows cannot be stored yet")
        report = CycleReport(boundary=self._clock())
        for meter in self.meters:
            assert meter.id is not None
            latest = await asyncio.to_thread(self.store.last_register_reads, meter.id)
            ends = await asyncio.to_thread(self.store.last_interval_ends, meter.id)
            since = min(ends.values()) - self.interval if ends else None
            reads = await asyncio.to_thread(poll_reads_since, self.store.engine, meter.id, since)
            for (meter_id, channel), series in self._series.items():
                if meter_id == meter.id:
                    self._resume(meter, series, ends.get(channel), reads.get(channel, []),
                                 latest.get(channel), report)  # fmt: skip
        intervals, anomalies = self._intervals, self._anomalies
        self._intervals, self._anomalies = [], []
        try:
            await asyncio.to_thread(self.store.ingest_intervals, intervals)
            await asyncio.to_thread(self.store.add_anomalies, anomalies)
        except StorageUnavailable:
            raise
        except AmigateError as exc:  # refused for good: as the spool does, log and go on
            _LOG.error("bus %s: the database refused rows derived on restore: %s",
                       self.bus.name, exc)  # fmt: skip
        await self.clocks.restore([m.id for m in self.meters if m.id is not None])
        if (synced := self.spool.get_note("last_time_sync")) is not None:
            self.clocks.last_sync = datetime.fromisoformat(synced)
        await self.backfill.restore(self._clock())
        self.restored = True

    def _resume(
        self, meter: Meter, series: SeriesNormalizer, end: datetime | None,
        reads: Sequence[RegisterRead], latest: RegisterRead | None, report: CycleReport,
    ) -> None:  # fmt: skip
        """Anchor ``series`` at the read ending its last interval; normalize the later reads."""
        self._collect(series.resume(end, reads, latest, identity=_who(meter)), report)

    async def _try_restore(self) -> bool:
        """Restore if the database is there; collect reads into the spool meanwhile."""
        try:
            await self.restore()
        except StorageUnavailable as exc:
            if not self._unrestored_warned:
                _LOG.error("bus %s: database unavailable: reads go to the spool, their intervals "
                           "are computed when it returns (%s)", self.bus.name, exc)  # fmt: skip
                self._unrestored_warned = True
            return False
        if self._unrestored_warned:
            _LOG.info("bus %s: database is back: series resumed", self.bus.name)
            self._unrestored_warned = False
        return True

    def stop(self) -> None:
        """Ask :meth:`run` to end after the meter being read now (its cycle is stored)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping.is_set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up as soon as the worker is asked to stop."""
        if self.stopping:
            return
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, seconds)))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    async def run(self) -> None:
        """Read every interval until cancelled or :meth:`stop` is called."""
        await self._try_restore()
        if self.metrics is not None:
            self.metrics.bus_started(self.bus.name, len(self.meters))
        _LOG.info(
            "bus %s: %d meter(s) every %d min on %s",
            self.bus.name, len(self.meters), self.plan.interval_minutes, self.bus.url,
        )  # fmt: skip
        while not self.stopping:
            now = self._clock()
            boundary = floor_boundary(now, self.interval) + self.interval
            await self._pause((boundary - now).total_seconds())
            if self.stopping:
                break
            await self.poll_cycle(boundary)
            # What is left of the interval goes to backfill, never the next cycle's reads.
            margin = max(2.0, self.interval.total_seconds() / 10)
            await self.idle_work(boundary + self.interval - timedelta(seconds=margin))
        _LOG.info("bus %s: stopped", self.bus.name)

    async def idle_work(self, deadline: datetime) -> int:
        """After a cycle: the daily freezes that are due, then backfill until ``deadline``."""
        reads: list[Row] = []
        for meter in self.freezes.due(self._clock(), self.availability.available):
            if self.stopping or self._clock() >= deadline:
                break
            assert meter.id is not None
            offset = self.clocks.offset(meter.id)
            reads += await self.freezes.read(meter, self.readers[meter.id], self._clock, offset)
        if reads:
            await self._spool(reads)
            await self._drain()
        return await self.backfill_until(deadline)

    async def backfill_until(self, deadline: datetime) -> int:
        """Work off the backfill queue until ``deadline`` (or it is empty); return intervals.

        Backfill waits while spooled rows are not stored yet (the spans it replaces
        may be among them) and skips meters marked unavailable.
        """
        filled = 0
        while not self.stopping and self._clock() < deadline and not len(self.spool):
            available = self.availability.available
            if not self.backfill.pending(available):
                break
            try:
                step = await self.backfill.step(self.readers, self._clock, available)
            except StorageUnavailable:
                break
            filled += step.intervals
        return filled

    # --- one cycle --------------------------------------------------------------------

    async def poll_cycle(self, boundary: datetime) -> CycleReport:
        """Read every meter once for ``boundary`` and store the results.

        Returns:
            Which meters were read, failed or skipped (isolated, not due for a probe).
        """
        if not self.restored:
            await self._try_restore()
        report = CycleReport(boundary=boundary)
        count = max(1, len(self.meters))
        for index, meter in enumerate(self.meters):
            assert meter.id is not None
            start = boundary + timedelta(seconds=self.plan.spread_s * index / count)
            if (wait := (start - self._clock()).total_seconds()) > 0:
                await self._pause(wait)
            if self.stopping:  # the rest of the cycle is not read: no rows for it
                break
            if self.availability.isolated(meter.id):
                report.skipped.append(meter.id)
                self._missed(meter, boundary, report)
                continue
            try:
                values = await self._read(meter)
            except asyncio.CancelledError:
                raise
            except AmigateError as exc:
                self.availability.failed(meter, exc)
                report.failed.append(meter.id)
                self._missed(meter, boundary, report)
                continue
            except Exception as exc:  # a bug: log with traceback, count as a failure
                _LOG.exception("bus %s: meter %s: unexpected error", self.bus.name, meter.address)
                self.availability.failed(meter, exc, quiet=True)
                report.failed.append(meter.id)
                self._missed(meter, boundary, report)
                continue
            self.availability.recovered(meter)
            report.ok.append(meter.id)
            self._take(meter, values, boundary, report)
            if self.restored and self.clocks.due(meter.id, self._clock()):
                await self.clocks.check(meter, self.readers[meter.id], self._clock, self._budget)
        if self.restored and not self.stopping:
            synced = self.clocks.last_sync
            await self.clocks.sync(self.meters, self.readers, self._clock())
            if self.clocks.last_sync != synced and self.clocks.last_sync is not None:
                stamp = self.clocks.last_sync.isoformat()  # kept: once a day across restarts
                await asyncio.to_thread(self.spool.set_note, "last_time_sync", stamp)
        await self._flush(report)
        if self.metrics is not None:
            self.metrics.set_unavailable(self.bus.name, self.availability.down)
        return report

    async def _read(self, meter: Meter) -> dict[str, Decimal | None]:
        """Read one meter, reporting the outcome and its duration to the metrics."""
        started = time.monotonic()
        ok = False
        try:
            values = await self._read_points(meter)
            ok = True
            return values
        finally:
            if self.metrics is not None:
                elapsed = time.monotonic() - started
                self.metrics.read(self.bus.name, meter.model, ok=ok, seconds=elapsed)

    async def _read_points(self, meter: Meter) -> dict[str, Decimal | None]:
        assert meter.id is not None
        points = self._points[meter.id]
        budget = self._budget
        if budget is None:
            per_request = self.plan.timeout_s or 2.0
            budget = per_request * (self.plan.retries + 1) * max(1, len(points)) + 1.0
        try:
            async with asyncio.timeout(budget):
                return await self.readers[meter.id].read(points)
        except TimeoutError:
            raise ReadTimeout(
                f"meter {meter.address}: no complete read within {budget:g} s"
            ) from None

    # --- results ----------------------------------------------------------------------

    def _take(
        self, meter: Meter, values: Mapping[str, Decimal | None], boundary: datetime,
        report: CycleReport,
    ) -> None:  # fmt: skip
        assert meter.id is not None
        now = self._clock()
        read_at = max(now, boundary)  # the read stands for this boundary
        for point in self._points[meter.id]:
            value = values.get(point.channel)
            if point.kind is PointKind.INSTANTANEOUS:
                if value is not None:
                    factor = sample_multiplier(point.unit, meter.ct_ratio, meter.pt_ratio)
                    self._samples.append(
                        Sample(meter_id=meter.id, channel=point.channel, at=read_at,
                               value=value * factor)
                    )  # fmt: skip
                continue
            series = self._series[(meter.id, point.channel)]
            if not self.restored:  # the read is kept; its interval is computed on restore
                if value is not None:
                    self._reads.append(RegisterRead(
                        meter_id=meter.id, channel=point.channel, read_at=read_at, value=value,
                        collected_at=now, source=Source.POLL,
                    ))  # fmt: skip
                continue
            if value is None:
                self._collect(series.missed(boundary), report)
                continue
            read = RegisterRead(
                meter_id=meter.id, channel=point.channel, read_at=read_at, value=value,
                collected_at=now, source=Source.POLL,
            )  # fmt: skip
            self._reads.append(read)
            self._collect(series.read(read, identity=_who(meter)), report)

    def _missed(self, meter: Meter, boundary: datetime, report: CycleReport) -> None:
        assert meter.id is not None
        if not self.restored:
            return
        for (meter_id, _), series in self._series.items():
            if meter_id == meter.id:
                self._collect(series.missed(boundary), report)

    def _collect(self, outcome: Outcome, report: CycleReport) -> None:
        for row in outcome.intervals:
            if SPAN_REASON in row.reason_codes:
                self.backfill.add(row)
        self._intervals.extend(outcome.intervals)
        self._anomalies.extend(outcome.anomalies)
        report.intervals += len(outcome.intervals)
        report.anomalies += len(outcome.anomalies)

    async def _flush(self, report: CycleReport) -> None:
        """Spool the cycle's rows (durably: the cycle is then done), then drain the spool.

        The database may be away: the rows wait in the spool and later cycles drain
        them oldest first; register reads go first, so a restart resumes from them.
        """
        await self.availability.store(self.store)
        rows: list[Row] = [*self._reads, *self._intervals, *self._samples, *self._anomalies]
        self._reads, self._intervals, self._samples, self._anomalies = [], [], [], []
        await self._spool(rows)
        await self._drain()

    async def _spool(self, rows: Sequence[Row]) -> None:
        """Append rows to the spool; after a drop, series resume from the database.

        A full spool drops the oldest reads and intervals: the intervals computed
        since are not to be trusted across the hole, so the series are derived again
        from what the database holds once it has the rest (:meth:`restore`).
        """
        dropped = await asyncio.to_thread(self.spool.append, rows, backfillable=self.backfillable)
        if dropped.total:
            self.restored = False
            if self.metrics is not None:
                self.metrics.set_spool(self.bus.name, len(self.spool),
                                       backfillable=dropped.backfillable,
                                       other=dropped.other)  # fmt: skip

    async def _drain(self) -> None:
        """Store the spool oldest first; log once when the database goes and once back."""
        waiting = len(self.spool)
        try:
            await asyncio.to_thread(drain, self.spool, self.store)
        except StorageUnavailable as exc:
            # Until it is back, only reads are spooled; intervals are derived on restore.
            self.restored = False
            if self._outage is None and not self._unrestored_warned:
                _LOG.warning("bus %s: database unavailable: spooling %d rows; intervals are "
                             "computed from the spooled reads when it returns (%s)",
                             self.bus.name, len(self.spool), exc)  # fmt: skip
            self._outage = self._outage or self._clock()
            self._unrestored_warned = True
        else:
            if self._outage is not None:
                _LOG.info("bus %s: database is back: drained %d rows after %s", self.bus.name,
                          waiting, self._clock() - self._outage)  # fmt: skip
                self._outage = None
        if self.metrics is not None:
            self.metrics.set_spool(self.bus.name, len(self.spool))


def _who(meter: Meter) -> str:
    """The identity of the device behind a series: a change means a meter exchange."""
    return f"{meter.address}/{meter.model}"
