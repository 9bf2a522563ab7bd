"""The collection service: the HTTP API and one bus worker per bus, in one asyncio process.

:class:`Service` registers the fleet's meters in the database (new ones are added,
known ones keep their ids), opens every bus and reads all of them concurrently,
while uvicorn serves the API (``/healthz``, ``/readyz``, ``/metrics``) in the same
event loop; with ``api_processes`` above 1, API processes beside it serve the port
instead (``amigate.api.processes``), and billing reads take no CPU from the buses.
SIGINT or SIGTERM stops it gracefully: each worker ends after the meter it is
reading (and stores that cycle), the API and its processes stop, drivers close; the
caller disposes of the engine.

Meters added with ``amigate meters add`` on a bus of the fleet are read as well;
retired meters are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from amigate.api import create_app
from amigate.api.fair_accept import UvicornServer
from amigate.api.processes import ApiProcesses, bind, until_listening, uvicorn_config
from amigate.api.v1.warm_up import warm
from amigate.clocks import ClockPolicy
from amigate.codecs import Dlt645Version
from amigate.config import Settings
from amigate.domain import Meter, MeterStatus, Protocol
from amigate.drivers.dlt645 import Dlt645Client
from amigate.drivers.modbus import ModbusBus, ModbusMeter
from amigate.errors import AmigateError, StorageUnavailable
from amigate.fleet import BusConfig, Fleet
from amigate.memory import bound_sqlite, settle_heap, trim
from amigate.meter_cache import load_meters, save_meters
from amigate.meter_models import MeterModel
from amigate.metrics import DayCompleteness, Metrics
from amigate.poller import BusWorker, Dlt645Reader, MeterReader, ModbusReader
from amigate.spool import Spool
from amigate.storage import Store
from amigate.storage.engine import reader_engine
from amigate.transports import open_transport
from amigate.transports.url import SerialParams, parse_url

__all__ = ["Service", "TimeBase"]

_LOG = logging.getLogger(__name__)
#: The register whose intervals count for the daily success rate.
_SUCCESS_CHANNEL = "1.8.0"
#: Seconds between attempts to open a bus that cannot be opened.
_REOPEN_S = 30.0
#: Seconds between two hand-backs of freed memory.
_TRIM_S = 60.0
#: Interval cells (meter x channel x interval) one validation chunk may hold: its
#: columns take about 100 bytes a cell, so a chunk stays near 15 MB at any interval.
_VEE_CELLS = 150_000
#: Energy channels assumed per meter when sizing validation chunks.
_VEE_CHANNELS = 4
#: Threads for blocking work (spool, database): a cycle's rows are encoded, spooled and
#: stored in them, so this many buses at once hold their rows twice over; SQLite writes
#: one at a time anyway. Validation and billing upkeep take one each while they run.
_WORKER_THREADS = 3
#: Seconds a worker may take to finish its meter after a stop request.
_STOP_GRACE_S = 10.0


class TimeBase:
    """The collection clock: real UTC time, or time running ``scale`` times faster.

    A scaled clock lets a demo or a test watch hours of 1-minute intervals in
    minutes; simulated meters are given the same clock so both sides agree.
    """

    def __init__(self, scale: float = 1.0, *, origin: datetime | None = None) -> None:
        """Start now; ``scale`` > 1 speeds time up from ``origin`` (default: this moment).

        A fixed ``origin`` maps wall time to the same scaled time in every process,
        so a restarted service carries on where the previous one stopped.
        """
        self.scale = scale
        wall, self._mono = datetime.now(UTC), time.monotonic()
        self._wall = wall if origin is None else origin + (wall - origin) * scale

    def now(self) -> datetime:
        """The current (possibly scaled) UTC time."""
        if self.scale == 1:
            return datetime.now(UTC)
        return self._wall + timedelta(seconds=(time.monotonic() - self._mono) * self.scale)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock."""
        await asyncio.sleep(max(0.0, seconds) / self.scale)


@dataclass
class _Bus:
    config: BusConfig
    meters: list[Meter]
    worker: BusWorker | None = None
    close: Callable[[], Awaitable[None]] | None = None
    spool: Spool | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Service:
    """``amigate run``: the API, and bus workers when a fleet is configured."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        fleet: Fleet | None,
        models: Mapping[str, MeterModel],
        host: str,
        port: int,
        clock: TimeBase | None = None,
        metrics: Metrics | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Set up the service (nothing runs until :meth:`run`)."""
        self.settings = settings
        self.store = store
        self.fleet = fleet
        self.models = models
        self.host, self.port = host, port
        self.clock = clock or TimeBase(settings.time_scale, origin=settings.time_origin)
        self.metrics = metrics or Metrics()
        self.metrics.set_completeness(self.completeness if fleet else None)
        self.buses: list[_Bus] = []
        self.workers_started = False
        self._on_ready = on_ready
        self._stop = asyncio.Event()
        self._validation: asyncio.Task[None] | None = None
        self._totals: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._api_processes: ApiProcesses | None = None

    # --- meters -------------------------------------------------------------------------

    def register_meters(self) -> None:
        """Store the fleet's meters and collect, per bus, the meters to read.

        The list is also saved beside the spools; when the database cannot be reached,
        the saved list of the last start is used (the reads wait in the spools).

        Raises:
            StorageUnavailable: the database is away and no list was saved yet.
        """
        if self.fleet is None:
            return
        cache = self.settings.spool_path / "meters.json"
        try:
            self.store.register_meters(self.fleet.meters)
            stored = self.store.meters()
        except StorageUnavailable as exc:
            saved = load_meters(cache)
            if saved is None:
                raise
            _LOG.error("database unavailable at start-up (%s): reading the %d meter(s) saved in "
                       "%s into the spools until it returns", exc, len(saved), cache)  # fmt: skip
            stored = saved
        else:
            save_meters(cache, stored)
        self._use(stored)

    def _use(self, stored: list[Meter]) -> None:
        assert self.fleet is not None
        names = {b.name for b in self.fleet.buses}
        for bus in self.fleet.buses:
            meters = [
                m for m in stored
                if m.bus == bus.name and m.protocol == bus.protocol
                and m.status is not MeterStatus.RETIRED
            ]  # fmt: skip
            self.buses.append(_Bus(config=bus, meters=meters))
        orphans = sorted({m.bus for m in stored if m.bus not in names and m.status != "retired"})
        if orphans:
            _LOG.warning(
                "meters on bus(es) %s are not read: no such bus in %s", ", ".join(orphans),
                self.fleet.path or "the fleet",
            )  # fmt: skip

    def readiness(self) -> tuple[bool, str]:
        """Ready once every bus worker has been started and every API process listens."""
        if not self.workers_started:
            return False, "bus workers not started yet"
        missing = None if self._api_processes is None else self._api_processes.missing()
        return (False, missing) if missing else (True, "")

    def completeness(self) -> list[DayCompleteness]:
        """Meters with a complete day, yesterday and so far today (site timezone)."""
        tz = self.settings.timezone
        local = self.clock.now().astimezone(tz)
        today = datetime(local.year, local.month, local.day, tzinfo=tz)
        yesterday = (today - timedelta(days=1)).replace(tzinfo=tz)
        tomorrow = (today + timedelta(days=1)).replace(tzinfo=tz)
        minutes = {
            m.id: bus.config.plan.interval_minutes for bus in self.buses for m in bus.meters if m.id
        }  # fmt: skip
        before = self.store.interval_counts(_SUCCESS_CHANNEL, yesterday, today)
        day_s = (today.astimezone(UTC) - yesterday.astimezone(UTC)).total_seconds()
        full = sum(
            1 for ident, mins in minutes.items()
            if before.get(ident, (0, 0))[0] >= day_s // (mins * 60)
        )  # fmt: skip
        now = self.store.interval_counts(_SUCCESS_CHANNEL, today, tomorrow)
        so_far = sum(1 for i in minutes if now.get(i, (0, 0))[0] > 0 and now[i][1] == 0)
        return [
            DayCompleteness("yesterday", full, len(minutes)),
            DayCompleteness("today", so_far, len(minutes)),
        ]

    # --- running ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the service to stop (what SIGINT and SIGTERM do)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`, SIGINT or SIGTERM.

        Raises:
            PortUnavailable: the API port cannot be bound.
            ConfigError: API processes asked for on an in-memory database.
        """
        helpers = ApiProcesses(
            self.settings, self.store.engine.url.render_as_string(hide_password=False),
            render=self.metrics.render, readiness=self.readiness,
        )  # fmt: skip
        here = self.settings.api_processes == 1  # else the API processes accept from its socket
        sock = bind(self.host, self.port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        sqlite_limit = bound_sqlite(self.settings.sqlite_heap_mb << 20)
        loop.set_default_executor(ThreadPoolExecutor(_WORKER_THREADS, thread_name_prefix="amigate"))
        readers, server, api = self.store.engine, None, None
        if here:
            readers = reader_engine(self.store.engine, connections=self.settings.api_connections,
                                    sqlite_cache_kib=self.settings.sqlite_cache_mb << 10)
            app = create_app(self.settings, readers, metrics=self.metrics,
                             readiness=self.readiness)  # fmt: skip
            await asyncio.to_thread(warm, app, self.settings.api_connections)
            server = UvicornServer(uvicorn_config(app, self.settings))
            api = asyncio.create_task(server.serve(sockets=[sock]), name="api")
        helpers.start(sock)
        self._api_processes = helpers
        try:
            await self._register()
            for bus in self.buses:
                bus.tasks.append(asyncio.create_task(self._bus(bus), name=f"bus {bus.config.name}"))
            self.workers_started = True
            self._trimmer = asyncio.create_task(self._trim_loop(), name="memory")
            if self.fleet is not None and self.settings.vee_every_minutes:
                self._validation = asyncio.create_task(self._validate_loop(), name="validation")
            if self.settings.day_totals_every_minutes:
                self._totals = asyncio.create_task(self._totals_loop(), name="day totals")
            if await until_listening(server, api, helpers, self._stop) and self._on_ready:
                self._on_ready()
            stopper = asyncio.create_task(self._stop.wait())
            waited = {t for t in (api, stopper) if t is not None}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            _LOG.info("stopping: workers finish the meter they are reading")
            for task in (self._validation, self._totals, self._trimmer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._stop_buses()
            if server is not None and api is not None:
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await api
            await asyncio.to_thread(helpers.stop)
            sock.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if readers is not self.store.engine:
                readers.dispose()
            bound_sqlite(sqlite_limit)
        _LOG.info("stopped")

    async def _trim_loop(self) -> None:
        """Free the cycles' garbage and hand the pages back every minute (``amigate.memory``).

        What is alive once the service has started (modules, models, the fleet) is
        frozen out of the collector, so a full collection only walks what the cycles
        made; it runs every minute because cyclic garbage of the cycles otherwise
        waits for the rare oldest-generation collection, tens of MB later.
        """
        settle_heap()
        try:
            while not self._stop.is_set():
                await asyncio.sleep(_TRIM_S)
                started = time.perf_counter()
                found = gc.collect()
                _LOG.debug("collected %d objects in %.3f s", found, time.perf_counter() - started)
                await asyncio.to_thread(trim)
        finally:
            gc.unfreeze()

    def _vee_chunk(self) -> int:
        """Meters validated together: the most whose window fits :data:`_VEE_CELLS`."""
        minutes = min((b.config.plan.interval_minutes for b in self.buses), default=15)
        hours = self.settings.vee_window_hours + 24  # the window and the day before it
        per_meter = _VEE_CHANNELS * hours * 60 // max(1, minutes)
        return max(10, min(400, _VEE_CELLS // max(1, per_meter)))

    async def _every(
        self, what: str, first_s: float, every_s: float, job: Callable[[], Awaitable[None]],
        failed: Callable[[], None],
    ) -> None:  # fmt: skip
        """Run ``job`` ``first_s`` after the start and then every ``every_s`` (service clock)
        until the stop. A failed run is logged, counted through ``failed`` and tried again
        at the next turn."""
        wait = first_s
        while not self._stop.is_set():
            await self.clock.sleep(wait)
            wait = every_s
            try:
                await job()
            except AmigateError as exc:
                _LOG.warning("%s failed: %s; trying again in %d min", what, exc, every_s // 60)
                failed()
            except Exception:  # a bug: never end the service for it
                _LOG.exception("%s failed", what)
                failed()

    async def _totals_loop(self) -> None:
        """Billing upkeep (``amigate.billing.upkeep``: day totals, change-feed pruning and
        chunk order), a minute after the start and then every ``day_totals_every_minutes``;
        each step is counted on its own."""
        from amigate.billing.upkeep import run_upkeep

        classifier = self.settings.tou.classifier(self.settings.timezone)
        run = partial(
            run_upkeep, self.store, classifier,
            interval_s=int(self.settings.interval.total_seconds()),
            days=self.settings.day_totals_days,
            retention=timedelta(days=self.settings.feed_retention_days),
        )  # fmt: skip

        async def upkeep() -> None:
            report = await asyncio.to_thread(partial(run, now=self.clock.now()))
            for step in report.done + report.failed:
                self.metrics.upkeep_step(step, ok=step in report.done)
            self.metrics.day_totals(ok="day_totals" in report.done, rows=report.rows,
                                    series=report.series)  # fmt: skip

        await self._every("billing upkeep", 60.0, self.settings.day_totals_every_minutes * 60,
                          upkeep, lambda: self.metrics.day_totals(ok=False))  # fmt: skip

    async def _validate_loop(self) -> None:
        """Validate what arrived, every ``vee_every_minutes`` (rules, estimates, line loss).

        Each run looks back ``vee_window_hours``; results are idempotent, so data
        seen again changes nothing. A failed run is logged and tried at the next turn.
        """
        from amigate.vee.engine import DAILY_RULES, INCREMENTAL_HISTORY, validate
        from amigate.vee.registry import RULES

        every = self.settings.vee_every_minutes * 60
        window = timedelta(hours=self.settings.vee_window_hours)
        # What ``validate_since`` runs, with the service's models and memory-sized chunks.
        incremental = partial(
            validate, self.store, settings=self.settings.vee,
            rules=[r for r in RULES if r not in DAILY_RULES], line_loss=False,
            history=INCREMENTAL_HISTORY, long_gaps=False, models=dict(self.models),
            chunk_meters=self._vee_chunk(),
        )  # fmt: skip

        async def run() -> None:
            since = self.clock.now() - window
            report = await asyncio.to_thread(partial(incremental, since=since))
            self.metrics.validation(ok=True, intervals=report.intervals)
            _LOG.debug("validation: %d meter(s), %d interval(s), anomalies %s, %d estimate(s)",
                       report.meters, report.intervals, report.anomalies,
                       report.versions)  # fmt: skip

        await self._every("validation run", every, every, run,
                          lambda: self.metrics.validation(ok=False))  # fmt: skip

    async def _register(self) -> None:
        """Register the fleet, waiting for the database when there is no saved meter list."""
        warned = False
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.register_meters)
                return
            except StorageUnavailable as exc:
                if not warned:
                    _LOG.error("database unavailable at start-up and no saved meter list: "
                               "waiting for it to read the buses (%s)", exc)  # fmt: skip
                    warned = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _REOPEN_S)

    async def _stop_buses(self) -> None:
        for bus in self.buses:
            if bus.worker is not None:
                bus.worker.stop()
        tasks = [t for bus in self.buses for t in bus.tasks]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=_STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for bus in self.buses:
            if bus.close is not None:
                with contextlib.suppress(AmigateError, OSError):
                    await bus.close()
            if bus.spool is not None:
                bus.spool.close()

    async def _bus(self, bus: _Bus) -> None:
        """Open the bus (retrying while it cannot be opened), then read it until stopped."""
        name = bus.config.name
        if not bus.meters:
            _LOG.warning("bus %s: no active meters; nothing to read", name)
            return
        warned = False
        while not self._stop.is_set():
            try:
                readers, bus.close = await self._open(bus.config, bus.meters)
                break
            except AmigateError as exc:
                if not warned:
                    _LOG.error("bus %s: cannot open %s: %s; retrying every %.0f s",
                               name, bus.config.url, exc, _REOPEN_S)  # fmt: skip
                    warned = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _REOPEN_S)
        else:
            return
        if warned:
            _LOG.info("bus %s: opened %s", name, bus.config.url)
        name_safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        bus.spool = Spool(self.settings.spool_path / f"{name_safe}.spool",
                          max_rows=self.settings.spool_max_rows, name=name)  # fmt: skip
        bus.worker = BusWorker(
            bus.config, bus.meters, readers, self.store, self.models,
            clock=self.clock.now, sleep=self.clock.sleep, metrics=self.metrics, spool=bus.spool,
            clock_policy=ClockPolicy.from_settings(self.settings),
        )  # fmt: skip
        if self._stop.is_set():
            return
        try:
            await bus.worker.run()
        except AmigateError as exc:
            _LOG.error("bus %s: worker ended: %s", name, exc)

    async def _open(
        self, bus: BusConfig, meters: Sequence[Meter]
    ) -> tuple[dict[int, MeterReader], Callable[[], Awaitable[None]]]:
        plan = bus.plan
        if bus.protocol is Protocol.MODBUS:
            modbus = ModbusBus(bus.url)
            await modbus.open()
            # The worker isolates dead meters on its own schedule: none in the driver.
            modbus_readers: dict[int, MeterReader] = {
                m.id: ModbusReader(ModbusMeter(
                    modbus, self.models[m.model], int(m.address), timeout=plan.timeout_s or 0.5,
                    retries=plan.retries, backoff=None,
                ))
                for m in meters if m.id is not None
            }  # fmt: skip
            return modbus_readers, modbus.aclose
        params = parse_url(bus.url)
        serial = isinstance(params, SerialParams)
        transport = await open_transport(params)
        client = Dlt645Client(
            transport, version=Dlt645Version(str(bus.protocol)),
            baud=params.baudrate if isinstance(params, SerialParams) else 2400,
            bits_per_char=params.bits_per_char if isinstance(params, SerialParams) else 11,
            retries=plan.retries, timeout=plan.timeout_s or None, slack=0.3 if serial else 0.5,
        )  # fmt: skip
        readers: dict[int, MeterReader] = {
            m.id: Dlt645Reader(client, m.address) for m in meters if m.id is not None
        }
        return readers, transport.aclose
