"""Backfill: replace the span across a gap with the meter's own load-profile records.

After a gap (gateway down, bus down, meter unreachable) the first read that
comes back closes it with a **span**: one row holding the register delta across
the gap (``amigate.normalize``). A DL/T 645 meter keeps load-profile records
(register values every 15 minutes for its last days), so the gap can be filled
with actual intervals read from the meter itself:

* the base is the register value the span starts from (the poll read of its
  first slot, or the load-profile read a previous step ended on);
* each record inside the gap is a register value at a boundary; consecutive
  values give an ``ACTUAL`` interval with source ``BACKFILL`` (a span again where
  the meter has no record, e.g. while it was off);
* what is left of the span after the records read so far stays one span from
  the last record to the end of the gap, so the latest rows always add up to
  the register delta across the gap to the last digit, however far backfill got.

Rows are new versions (one above the highest stored at each slot), so the
intervals as first collected stay queryable; the records' register values are
stored as register reads with source ``LOAD_PROFILE``. A gap is read in chunks of
a few records, oldest gap first (its records leave the meter's memory first), in
the time a bus has left after its live reads, so backfill never delays them;
progress is in the metrics (``amigate_backfill_backlog_intervals``) and in
``amigate backfill status``. Modbus meters have no memory: their gaps keep
their missing intervals and span.

Record times are the meter clock's: a meter takes a record when *its* clock
reaches an interval boundary, so a meter 2 min ahead stamps ``10:15`` the
register value of 10:13. Each record time is corrected by the meter's last
measured clock offset (``clock_checks``, the same offset the clock rules use)
and the record stands for the nearest boundary. When that offset, or the
distance from the corrected time to the boundary, exceeds the clock threshold
(``clock_offset_threshold_s``), the record is still used (its register value is
exact, and the rows still add up to the register delta) but the intervals it
bounds are flagged with the reason ``2.1.9`` (meter clock out of tolerance),
like the intervals of a meter in a ``clock_offset`` episode. A meter whose
offset was never measured is taken as right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from amigate.domain import Interval, Meter, Protocol, Quality, RegisterRead, Source
from amigate.errors import AmigateError, DeviceRejected
from amigate.meter_models import MeterModel, PointKind, PointSpec
from amigate.metrics import Metrics
from amigate.normalize import SPAN_REASON, floor_boundary
from amigate.readers import LoadRecord, MemoryReader, MeterReader, load_profile_channels
from amigate.storage.gap_queries import open_spans
from amigate.storage.store import Store

__all__ = ["CLOCK_ERROR", "Backfiller", "Gap", "StepResult"]

_LOG = logging.getLogger(__name__)
Clock = Callable[[], datetime]
#: Records asked for in one request (a few frames on the wire).
CHUNK = 16
#: Failed reads of one gap before it is given up.
_MAX_FAILURES = 3
#: Reason code of a row bounded by a record of a meter whose clock is out of tolerance
#: (IEC 61968-9 2.1.9, ``amigate.vee.quality.REASONS["clock_error"]``; not imported: the
#: collection path stays free of the validation modules).
CLOCK_ERROR = "2.1.9"


@dataclass
class Gap:
    """The open span of one channel: what backfill still has to replace.

    Attributes:
        meter_id: the meter.
        channel: the channel code.
        start: the boundary the span starts from (its register value is stored).
        end: the boundary of the read that closed the gap.
        value: the energy of the span (multiplied).
        source: where the span came from (``POLL``: a live read closed the gap;
            ``BACKFILL``: an earlier step ended on a load-profile record at ``start``).
        failures: failed reads so far.
        clock_error: ``start`` is a record of a meter whose clock was out of tolerance.
    """

    meter_id: int
    channel: str
    start: datetime
    end: datetime
    value: Decimal
    source: Source = Source.POLL
    failures: int = 0
    clock_error: bool = False

    @classmethod
    def of(cls, span: Interval) -> Gap:
        """The gap a span row stands for."""
        assert span.value is not None
        return cls(span.meter_id, span.channel, span.start, span.end, span.value, span.source,
                   clock_error=CLOCK_ERROR in span.reason_codes)  # fmt: skip


@dataclass
class StepResult:
    """What one backfill step did."""

    meter_id: int | None = None
    intervals: int = 0
    records: int = 0


class Backfiller:
    """The backfill queue of one bus and the steps that work it off."""

    def __init__(
        self, bus: str, meters: Sequence[Meter], models: Mapping[str, MeterModel], store: Store,
        interval: timedelta, *, metrics: Metrics | None = None,
        offset: Callable[[int], float | None] = lambda _: None, threshold_s: float = 60.0,
        chunk: int = CHUNK,
    ) -> None:  # fmt: skip
        """Set up the queue for the meters of ``bus`` whose model keeps a load profile.

        Args:
            bus: the bus name (logs and metrics).
            meters: the bus's meters (with ids).
            models: meter models by id.
            store: where spans are found and rows stored.
            interval: the interval length of the bus.
            metrics: where the backlog is reported.
            offset: the last measured clock offset of a meter (seconds, + ahead).
            threshold_s: a corrected record time must be this close to a boundary.
            chunk: records per request.
        """
        self.bus, self.store, self.interval = bus, store, interval
        self.metrics, self.offset = metrics, offset
        self.threshold_s, self.chunk = threshold_s, chunk
        self.meters: dict[int, Meter] = {}
        self.points: dict[int, PointSpec] = {}
        self.depth: dict[int, timedelta] = {}
        self.channels: dict[int, frozenset[str]] = {}
        for meter in meters:
            model = models[meter.model]
            point = next((p for p in model.points if p.kind is PointKind.LOAD_PROFILE), None)
            if meter.id is None or meter.protocol is Protocol.MODBUS or point is None:
                continue
            if model.memory.load_profile_days <= 0:
                continue
            self.meters[meter.id], self.points[meter.id] = meter, point
            self.depth[meter.id] = timedelta(days=model.memory.load_profile_days)
            self.channels[meter.id] = load_profile_channels(point)
        self.gaps: list[Gap] = []
        self.done = 0

    # --- the queue ----------------------------------------------------------------------

    def wanted(self, meter_id: int, channel: str) -> bool:
        """Whether gaps of the meter's channel can be backfilled (its records carry it)."""
        return channel in self.channels.get(meter_id, ())

    def add(self, span: Interval) -> None:
        """Queue the gap a new span stands for (spans nothing can backfill are ignored)."""
        if not self.wanted(span.meter_id, span.channel) or span.value is None:
            return
        gap = Gap.of(span)
        if not any(g.meter_id == gap.meter_id and g.channel == gap.channel
                   and g.start == gap.start for g in self.gaps):  # fmt: skip
            self.gaps.append(gap)
            self.gaps.sort(key=lambda g: (g.start, g.meter_id, g.channel))
        self._report()

    async def restore(self, now: datetime) -> None:
        """Queue the open spans stored for these meters within their memory depth."""
        if not self.meters:
            return
        since = now - max(self.depth.values())
        channels = sorted(set().union(*self.channels.values()))
        spans = await asyncio.to_thread(
            open_spans, self.store.engine, list(self.meters), since, channels=channels
        )
        for span in spans:
            if span.start >= now - self.depth[span.meter_id] and span.value is not None:
                self.add(span)
        if self.gaps:
            _LOG.info("bus %s: %d gap(s) to backfill, %d interval(s)",
                      self.bus, len(self.gaps), self.backlog)  # fmt: skip

    @property
    def backlog(self) -> int:
        """Intervals still covered by spans that backfill may replace."""
        return sum((g.end - g.start) // self.interval for g in self.gaps)

    def pending(self, available: Callable[[int], bool]) -> list[Gap]:
        """The queued gaps of meters that answer now, oldest first."""
        return [g for g in self.gaps if available(g.meter_id)]

    def _report(self) -> None:
        if self.metrics is not None:
            self.metrics.set_backfill(self.bus, self.backlog, self.done)

    # --- one step -----------------------------------------------------------------------

    async def step(
        self, readers: Mapping[int, MeterReader], clock: Clock,
        available: Callable[[int], bool] = lambda _: True,
    ) -> StepResult:  # fmt: skip
        """Read one chunk of records for the oldest gap of an answering meter and store it.

        The meter's other channels with a gap from the same boundary are served by
        the same records.

        Raises:
            StorageUnavailable: the database is away (the gap stays queued).
        """
        todo = self.pending(available)
        if not todo:
            return StepResult()
        first = todo[0]
        gaps = [g for g in todo if g.meter_id == first.meter_id and g.start == first.start]
        meter = self.meters[first.meter_id]
        reader = readers[meter.id or 0]
        result = StepResult(meter_id=meter.id)
        if not isinstance(reader, MemoryReader):
            self._drop(gaps)
            return result
        tz = ZoneInfo(meter.timezone)
        # Records carry the meter clock's local times: ask from the first one that
        # stands for a boundary after the gap's start (corrected: nearer to it than to start).
        offset = timedelta(seconds=self.offset(meter.id or 0) or 0.0)
        since = first.start + offset + self.interval / 2
        since = since.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
        try:
            records = await reader.read_load_profile(self.points[first.meter_id], since, self.chunk)
        except DeviceRejected as exc:
            _LOG.info("bus %s: meter %s has no load-profile records from %s (%s); "
                      "the gap stays a span", self.bus, meter.address, since, exc)  # fmt: skip
            self._drop(gaps)
            return result
        except AmigateError as exc:
            for gap in gaps:
                gap.failures += 1
            if first.failures >= _MAX_FAILURES:
                _LOG.warning("bus %s: meter %s: backfill from %s given up after %d failures: %s",
                             self.bus, meter.address, first.start, first.failures, exc)  # fmt: skip
                self._drop(gaps)
            return result
        result.records = len(records)
        points = self._points(meter, records, first.start, first.end, tz)
        more = len(records) >= self.chunk and bool(points) and points[-1][0] < first.end
        for gap in gaps:
            rows, reads, rest = await self._fill(meter, gap, points, more=more, now=clock())
            if rows is None:
                self._drop([gap])
                continue
            if reads:
                await asyncio.to_thread(self.store.ingest_register_reads, reads)
            if rows:
                await asyncio.to_thread(self.store.ingest_intervals, rows)
            result.intervals += sum(1 for r in rows if r.quality is Quality.ACTUAL)
            if rest is None:
                self._drop([gap])
            else:
                assert rest.value is not None
                gap.start, gap.value, gap.source, gap.failures = (
                    rest.start, rest.value, Source.BACKFILL, 0
                )  # fmt: skip
                gap.clock_error = CLOCK_ERROR in rest.reason_codes
        self.done += result.intervals
        self._report()
        return result

    def _drop(self, gaps: Sequence[Gap]) -> None:
        for gap in gaps:
            if gap in self.gaps:
                self.gaps.remove(gap)
        self._report()

    def _corrected(self, meter: Meter, record: LoadRecord, tz: ZoneInfo) -> tuple[datetime, bool]:
        """The boundary a record stands for, and whether its clock is out of tolerance."""
        measured = self.offset(meter.id or 0) or 0.0
        true = record.stamp.replace(tzinfo=tz).astimezone(UTC) - timedelta(seconds=measured)
        boundary = floor_boundary(true + self.interval / 2, self.interval)
        off = abs((true - boundary).total_seconds()) > self.threshold_s
        return boundary, off or abs(measured) > self.threshold_s

    def _points(
        self, meter: Meter, records: Sequence[LoadRecord], start: datetime, end: datetime,
        tz: ZoneInfo,
    ) -> list[tuple[datetime, LoadRecord, bool]]:  # fmt: skip
        """The records strictly inside ``(start, end)`` by their corrected UTC boundary.

        Returns:
            ``(boundary, record, flagged)`` by boundary, ``flagged`` when the meter's
            clock is out of tolerance (the first record of a boundary is kept).
        """
        out: dict[datetime, tuple[LoadRecord, bool]] = {}
        for record in records:
            boundary, flagged = self._corrected(meter, record, tz)
            if start < boundary < end:
                out.setdefault(boundary, (record, flagged))
        return sorted(((at, r, f) for at, (r, f) in out.items()), key=lambda item: item[0])

    async def _fill(
        self, meter: Meter, gap: Gap, points: Sequence[tuple[datetime, LoadRecord, bool]], *,
        more: bool, now: datetime,
    ) -> tuple[list[Interval] | None, list[RegisterRead], Interval | None]:  # fmt: skip
        """The rows replacing the front of ``gap`` (``None``: the records do not fit it).

        Returns:
            The interval rows, the register reads of the records used, and the new
            span left at the end (``None`` when the gap is closed).
        """
        assert meter.id is not None
        values = [(at, r.values[gap.channel], f) for at, r, f in points if gap.channel in r.values]
        if not values:
            return [], [], None  # nothing inside the gap: it stays a span, for good
        base = await asyncio.to_thread(self._base, gap)
        if base is None:
            _LOG.warning("bus %s: meter %s %s: no register read at %s to backfill from",
                         self.bus, meter.address, gap.channel, gap.start)  # fmt: skip
            return None, [], None
        rows: list[Interval] = []
        reads: list[RegisterRead] = []
        at, value, used, off = gap.start, base, Decimal(0), gap.clock_error
        for when, reading, flagged in values:
            energy = (reading - value) * meter.multiplier
            if energy < 0 or used + energy > gap.value:
                _LOG.warning(
                    "bus %s: meter %s %s: load-profile value %s at %s does not fit the gap "
                    "[%s, %s); the gap stays a span", self.bus, meter.address, gap.channel,
                    reading, when, gap.start, gap.end,
                )  # fmt: skip
                return None, [], None
            rows.append(self._row(gap, at, when, energy, clock_error=off or flagged))
            reads.append(RegisterRead(meter_id=meter.id, channel=gap.channel, read_at=when,
                                      value=reading, collected_at=now,
                                      source=Source.LOAD_PROFILE,
                                      clock_offset_s=self.offset(meter.id)))  # fmt: skip
            at, value, used, off = when, reading, used + energy, flagged
        rest = self._row(gap, at, gap.end, gap.value - used, clock_error=off)
        rows.append(rest)
        rows = await asyncio.to_thread(self._versioned, gap, rows)
        return rows, reads, rest if more and rest.duration > self.interval else None

    def _row(
        self, gap: Gap, start: datetime, end: datetime, energy: Decimal, *, clock_error: bool
    ) -> Interval:
        reasons = (SPAN_REASON,) if end - start > self.interval else ()
        return Interval(
            meter_id=gap.meter_id, channel=gap.channel, start=start, end=end, value=energy,
            quality=Quality.ACTUAL, source=Source.BACKFILL, version=2,
            reason_codes=reasons + ((CLOCK_ERROR,) if clock_error else ()),
        )  # fmt: skip

    def _base(self, gap: Gap) -> Decimal | None:
        """The register value the span starts from."""
        reads = self.store.register_reads(gap.meter_id, gap.channel, gap.start,
                                          gap.start + self.interval)  # fmt: skip
        if gap.source is Source.BACKFILL:
            exact = [r for r in reads if r.read_at == gap.start and r.source is Source.LOAD_PROFILE]
            return exact[0].value if exact else None
        polls = [r for r in reads if r.source is Source.POLL]
        return polls[0].value if polls else None

    def _versioned(self, gap: Gap, rows: list[Interval]) -> list[Interval]:
        """Give each row the version above the highest stored at its slot."""
        stored = self.store.intervals(gap.meter_id, gap.channel, gap.start, gap.end,
                                      version="all")  # fmt: skip
        top: dict[datetime, int] = {}
        for iv in stored:
            top[iv.start] = max(top.get(iv.start, 0), iv.version)
        out: list[Interval] = []
        for row in rows:
            if row.start not in top:  # no row at all: the interval as collected is missing
                out.append(Interval(meter_id=row.meter_id, channel=row.channel, start=row.start,
                                    end=row.start + self.interval, value=None,
                                    quality=Quality.MISSING))  # fmt: skip
            version = top.get(row.start, 1) + 1
            out.append(Interval(
                meter_id=row.meter_id, channel=row.channel, start=row.start, end=row.end,
                value=row.value, quality=row.quality, source=row.source, version=version,
                reason_codes=row.reason_codes,
            ))  # fmt: skip
        return out
