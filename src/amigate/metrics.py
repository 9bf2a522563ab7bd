"""Collection metrics in Prometheus text format.

One :class:`Metrics` object per service, holding its own registry (no process-wide
state: tests make a fresh one each). Bus workers report to it; ``/metrics``
renders it. Values derived at scrape time (bus utilization, the daily collection
success rate) are computed by a collector when the registry is rendered.

=========================================  ==========================================
``amigate_reads_total{bus,model,result}``  meter reads, ``result`` = ok | failed
``amigate_read_duration_seconds{bus}``     one meter's read (all its points), histogram
``amigate_bus_busy_seconds_total{bus}``    time the bus spent reading meters
``amigate_bus_utilization_ratio{bus}``     busy seconds / wall seconds since the bus started
``amigate_meters{bus}``                    meters polled on the bus
``amigate_meters_unavailable{bus}``        meters currently marked unavailable
``amigate_collection_success_ratio{day}``  meters with a complete day / meters
``amigate_spool_rows{bus}``                rows in the local spool, waiting for the database
``amigate_spool_dropped_rows_total``       rows dropped from a full spool, by ``bus`` and
                                           ``kind`` = backfillable | other
=========================================  ==========================================

A *complete day* is the utilities' count: every interval of the local day read
(quality actual). ``day="yesterday"`` is the last full day; ``day="today"`` counts
meters with no missing interval so far today.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from amigate.errors import AmigateError

__all__ = ["CONTENT_TYPE", "DayCompleteness", "Metrics"]

_LOG = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Read latency buckets: a Modbus block read over TCP takes milliseconds, a DL/T 645
#: meter at 2400 baud a few seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class DayCompleteness:
    """How many meters collected a complete day."""

    day: str
    complete: int
    meters: int


Completeness = Callable[[], list[DayCompleteness]]


class Metrics:
    """The metrics of one service; thread-safe (scrapes run in the API's threads)."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        completeness: Completeness | None = None,
        completeness_ttl_s: float = 30.0,
    ) -> None:
        """Create an empty registry.

        Args:
            monotonic: seconds for utilization (tests pass a manual one).
            completeness: computes the daily success rate (queries the database);
                ``None`` leaves the metric out until :meth:`set_completeness`.
            completeness_ttl_s: how long a computed success rate is reused.
        """
        self.registry = CollectorRegistry(auto_describe=True)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._busy: dict[str, float] = {}
        self._completeness = completeness
        self._ttl = completeness_ttl_s
        self._cached: tuple[float, list[DayCompleteness]] | None = None
        r = self.registry
        self.reads = Counter(
            "amigate_reads", "Meter reads by bus, meter model and result (ok, failed).",
            ["bus", "model", "result"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "amigate_read_duration_seconds", "Time to read one meter (all points of a cycle).",
            ["bus"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.busy = Counter(
            "amigate_bus_busy_seconds", "Seconds the bus spent reading meters.", ["bus"], registry=r
        )
        self.meters = Gauge("amigate_meters", "Meters polled on the bus.", ["bus"], registry=r)
        self.unavailable = Gauge(
            "amigate_meters_unavailable", "Meters currently marked unavailable.", ["bus"],
            registry=r,
        )  # fmt: skip
        self.spool = Gauge(
            "amigate_spool_rows", "Rows in the local spool, waiting for the database.", ["bus"],
            registry=r,
        )  # fmt: skip
        self.spool_dropped = Counter(
            "amigate_spool_dropped_rows", "Rows dropped from a full spool (backfillable, other).",
            ["bus", "kind"], registry=r,
        )  # fmt: skip
        self.clock_offset = Gauge(
            "amigate_clock_offset_seconds",
            "Offset of the meter clock at its latest check (positive: ahead).",
            ["bus", "meter"], registry=r,
        )  # fmt: skip
        self.backfill_backlog = Gauge(
            "amigate_backfill_backlog_intervals",
            "Intervals still covered by a gap span that backfill may replace.", ["bus"], registry=r,
        )  # fmt: skip
        self.backfilled = Gauge(
            "amigate_backfilled_intervals",
            "Intervals filled from meter memory (load profile) since start.", ["bus"], registry=r,
        )  # fmt: skip
        self.validations = Counter(
            "amigate_validation_runs", "Validation runs of the service, by result (ok, failed).",
            ["result"], registry=r,
        )  # fmt: skip
        self.validated = Counter(
            "amigate_validated_intervals", "Intervals validated by the service's runs.", registry=r
        )
        self.totals_runs = Counter(
            "amigate_day_totals_runs", "Day-totals builds of the service, by result (ok, failed).",
            ["result"], registry=r,
        )  # fmt: skip
        self.totals_rows = Counter(
            "amigate_day_totals_rows", "Day-total rows built (meter, channel, day, tariff period).",
            registry=r,
        )  # fmt: skip
        self.series_rows = Counter(
            "amigate_day_series_rows", "Day-series rows built (meter, channel, day).", registry=r,
        )  # fmt: skip
        self.upkeep_steps = Counter(
            "amigate_upkeep_steps", "Steps of the billing upkeep (day_totals, feed_prune, "
            "chunk_order), by result (ok, failed).", ["step", "result"], registry=r,
        )  # fmt: skip
        r.register(_Derived(self))

    # --- reported by bus workers ------------------------------------------------------

    def bus_started(self, bus: str, meters: int) -> None:
        """A bus worker started with ``meters`` meters."""
        with self._lock:
            self._started.setdefault(bus, self._monotonic())
            self._busy.setdefault(bus, 0.0)
        self.meters.labels(bus).set(meters)
        self.unavailable.labels(bus).set(0)
        self.busy.labels(bus)

    def read(self, bus: str, model: str, *, ok: bool, seconds: float) -> None:
        """One meter's read ended after ``seconds`` (successfully or not)."""
        self.reads.labels(bus, model, "ok" if ok else "failed").inc()
        if ok:
            self.latency.labels(bus).observe(seconds)
        self.busy.labels(bus).inc(seconds)
        with self._lock:
            self._busy[bus] = self._busy.get(bus, 0.0) + seconds

    def set_unavailable(self, bus: str, count: int) -> None:
        """``count`` meters of the bus are marked unavailable now."""
        self.unavailable.labels(bus).set(count)

    def set_spool(self, bus: str, rows: int, *, backfillable: int = 0, other: int = 0) -> None:
        """``rows`` rows wait in the bus's spool; ``backfillable`` + ``other`` were just dropped."""
        self.spool.labels(bus).set(rows)
        if backfillable:
            self.spool_dropped.labels(bus, "backfillable").inc(backfillable)
        if other:
            self.spool_dropped.labels(bus, "other").inc(other)

    def set_backfill(self, bus: str, backlog: int, done: int) -> None:
        """``backlog`` intervals wait for backfill on the bus; ``done`` were filled so far."""
        self.backfill_backlog.labels(bus).set(backlog)
        self.backfilled.labels(bus).set(done)

    def validation(self, *, ok: bool, intervals: int = 0) -> None:
        """A validation run ended."""
        self.validations.labels("ok" if ok else "failed").inc()
        self.validated.inc(intervals)

    def day_totals(self, *, ok: bool, rows: int = 0, series: int = 0) -> None:
        """A day-totals build ended (``series``: the day-series rows it built)."""
        self.totals_runs.labels("ok" if ok else "failed").inc()
        self.totals_rows.inc(rows)
        self.series_rows.inc(series)

    def upkeep_step(self, step: str, *, ok: bool) -> None:
        """A step of the billing upkeep ended."""
        self.upkeep_steps.labels(step, "ok" if ok else "failed").inc()

    def set_clock_offset(self, bus: str, meter: str, seconds: float) -> None:
        """The clock of ``meter`` (its address) was off by ``seconds`` at its latest check."""
        self.clock_offset.labels(bus, meter).set(seconds)

    def set_completeness(self, completeness: Completeness | None) -> None:
        """Set (or clear) how the daily success rate is computed."""
        with self._lock:
            self._completeness = completeness
            self._cached = None

    # --- rendering --------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def utilization(self) -> dict[str, float]:
        """Busy seconds / wall seconds since each bus started."""
        now = self._monotonic()
        with self._lock:
            return {
                bus: min(1.0, self._busy[bus] / (now - start)) if now > start else 0.0
                for bus, start in self._started.items()
            }

    def completeness(self) -> list[DayCompleteness]:
        """The daily success rate, recomputed at most every ``completeness_ttl_s``."""
        with self._lock:
            compute, cached = self._completeness, self._cached
        if compute is None:
            return []
        now = self._monotonic()
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            days = compute()
        except AmigateError as exc:  # the database is away: say so, keep serving the rest
            _LOG.warning("collection success rate unavailable: %s", exc)
            return cached[1] if cached is not None else []
        with self._lock:
            self._cached = (now, days)
        return days


class _Derived(Collector):
    """Values computed when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        util = GaugeMetricFamily(
            "amigate_bus_utilization_ratio", "Busy seconds / wall seconds since the bus started.",
            labels=["bus"],
        )  # fmt: skip
        for bus, busy in sorted(self.metrics.utilization().items()):
            util.add_metric([bus], busy)
        yield util
        success = GaugeMetricFamily(
            "amigate_collection_success_ratio",
            "Meters with a complete day (every interval read) / meters.", labels=["day"],
        )  # fmt: skip
        complete = GaugeMetricFamily(
            "amigate_meters_complete_day", "Meters with a complete day.", labels=["day"]
        )
        for day in self.metrics.completeness():
            success.add_metric([day.day], day.complete / day.meters if day.meters else 0.0)
            complete.add_metric([day.day], day.complete)
        yield success
        yield complete
