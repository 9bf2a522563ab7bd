"""Collection service benchmark: meter reads/s end to end, bus efficiency at 2400 baud, memory.

(a) End to end: 1,000 simulated DL/T 645 meters (3 of 4 single-phase, 1 of 4
    three-phase) behind 10 TCP endpoints; one ``BusWorker`` per endpoint reads its
    meters' whole cycle of points (energy registers and instantaneous values),
    normalizes and stores them (SQLite file in a temp dir, or ``--database-url``)
    through a file spool, exactly as ``amigate run`` wires them. Cycles are driven
    back to back (``spread_s = 0``, successive 15-minute boundaries). In the same
    run a bare sequential ``Dlt645Client`` issues the same requests against the same
    endpoints: the baseline. Target: end to end >= the bare client (requests/s).
(b) Bus efficiency: one emulated 2400-baud 8E1 bus; achieved requests/s divided by
    the theoretical maximum for the frames actually exchanged (request and reply
    bytes, preambles included, 11 bits each) plus the simulator's turnaround.
    Target >= 90 %.
(c) Memory: ``amigate run`` with 2,000 configured meters (20 buses x 100) reading
    simulators, SQLite in a temp dir, 1-minute intervals; VmRSS sampled every 10 s
    for ``--memory-seconds`` (300 by default) after the first reads: at the first
    reads, at six points of the run, at the end, the peak (VmHWM) and the slope
    over the second half (MB/hour). Target <= 150 MB and flat; the steady state
    needs a run of 15 minutes or more (``--skip a,b --memory-seconds 1200``), which
    includes the first validation run.

The simulators run as ``amigate sim dlt645`` subprocesses (not sharing the GIL with
the measured process); wire-time emulation is off in (a) and (c), on in (b).

Usage: python bench/collect.py [--quick] [--meters N] [--endpoints N] [--cycles N]
       [--rounds N] [--database-url URL] [--memory-seconds S] [--skip a,b,c]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import os
import platform
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amigate.clocks import ClockPolicy
from amigate.codecs import Dlt645Version
from amigate.config import Settings
from amigate.domain import Meter, Protocol
from amigate.drivers.dlt645 import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import DataId, MeterModel, load_models
from amigate.metrics import Metrics
from amigate.normalize import floor_boundary
from amigate.poller import BusWorker
from amigate.readers import Dlt645Reader, MeterReader, cycle_points
from amigate.spool import Spool
from amigate.storage import Store, make_engine, upgrade
from amigate.transports import Transport, open_transport
from collect_sim import LineTransport, SimBus, Simulators, service_memory

INTERVAL = timedelta(minutes=15)


class CycleClock:
    """The worker's clock: the cycle's boundary plus the time spent in the cycle.

    Cycles run back to back, each one interval after the previous, so the worker
    sees a normal day of intervals in seconds; never earlier than real time.
    """

    def __init__(self) -> None:
        """Start at real time."""
        self.boundary = datetime.now(UTC)
        self._since = time.monotonic()

    def start(self, boundary: datetime) -> None:
        """A cycle for ``boundary`` starts now."""
        self.boundary, self._since = boundary, time.monotonic()

    def __call__(self) -> datetime:
        """The current time of the cycle."""
        elapsed = timedelta(seconds=time.monotonic() - self._since)
        return max(datetime.now(UTC), self.boundary + elapsed)


def service_client(transport: Transport, plan: ReadPlan) -> Dlt645Client:
    """A client configured as ``Service`` configures one for a TCP bus."""
    return Dlt645Client(
        transport,
        version=Dlt645Version.V2007,
        baud=2400,
        bits_per_char=11,
        retries=plan.retries,
        timeout=plan.timeout_s or None,
        slack=0.5,
    )


@dataclass
class Bus:
    """One bus under measurement: its worker, clock, client and transport."""

    worker: BusWorker
    clock: CycleClock
    client: Dlt645Client
    transport: Transport


async def open_buses(
    sims: list[SimBus],
    store: Store,
    models: dict[str, MeterModel],
    spool_dir: Path,
    *,
    wrap: bool = False,
) -> list[Bus]:
    """Register the meters and build a worker per bus, as ``amigate run`` does."""
    fleet = [
        Meter(address=a, protocol=Protocol.DLT645_2007, model=m, bus=b.name)
        for b in sims
        for a, m in b.meters
    ]
    stored = await asyncio.to_thread(store.register_meters, fleet)
    out = []
    plan = ReadPlan(spread_s=0)
    metrics = Metrics()  # one registry for the whole service, as in ``Service``
    for sim in sims:
        meters = [m for m in stored if m.bus == sim.name]
        config = BusConfig(
            name=sim.name,
            protocol=Protocol.DLT645_2007,
            url=sim.url,
            plan=plan,
            meters=tuple(meters),
        )
        transport: Transport = await open_transport(sim.url)
        if wrap:
            transport = LineTransport(transport, byte_time=11 / 2400)
        client = service_client(transport, plan)
        readers: dict[int, MeterReader] = {
            m.id: Dlt645Reader(client, m.address) for m in meters if m.id is not None
        }
        clock = CycleClock()
        spool = Spool(
            spool_dir / f"{sim.name}.spool", max_rows=Settings().spool_max_rows, name=sim.name
        )
        worker = BusWorker(
            config,
            meters,
            readers,
            store,
            models,
            clock=clock,
            metrics=metrics,
            spool=spool,
            clock_policy=ClockPolicy(),
        )
        await worker.restore()
        out.append(Bus(worker, clock, client, transport))
    return out


async def close_buses(buses: list[Bus]) -> None:
    """Close transports and spools."""
    for bus in buses:
        await bus.transport.aclose()
        bus.worker.spool.close()


@dataclass
class Run:
    """What one measured stretch did."""

    seconds: float
    meter_reads: int
    requests: int
    failed: int = 0
    intervals: int = 0
    cpu: float = 0.0  # CPU seconds of this process (all threads)
    sim_cpu: float = 0.0  # CPU seconds of the simulators
    reading: float = 0.0  # seconds a bus spent reading meters (mean over the buses)

    def __add__(self, other: Run) -> Run:
        """Two stretches as one."""
        return Run(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Run)))

    @property
    def reads_s(self) -> float:
        """Meter reads per second."""
        return self.meter_reads / self.seconds

    @property
    def requests_s(self) -> float:
        """DL/T 645 request/response transactions per second."""
        return self.requests / self.seconds


class Cpu:
    """CPU seconds used by this process and by the simulators over a stretch."""

    def __init__(self, sims: Simulators | None) -> None:
        """Start counting."""
        self.sims = sims
        self.ours, self.theirs = time.process_time(), sims.cpu() if sims else 0.0

    def stop(self, run: Run) -> Run:
        """Put what was used since the start into ``run``."""
        run.cpu = time.process_time() - self.ours
        run.sim_cpu = (self.sims.cpu() if self.sims else 0.0) - self.theirs
        return run


async def drive(
    buses: list[Bus], first: datetime, cycles: int, sims: Simulators | None = None
) -> Run:
    """Run ``cycles`` cycles on every bus concurrently, back to back, from ``first``."""

    async def one(bus: Bus) -> tuple[int, int, int]:
        ok = failed = intervals = 0
        for k in range(cycles):
            boundary = first + k * INTERVAL
            bus.clock.start(boundary)
            report = await bus.worker.poll_cycle(boundary)
            ok, failed = ok + len(report.ok), failed + len(report.failed)
            intervals += report.intervals
        return ok, failed, intervals

    def busy() -> float:
        """Seconds the buses spent reading meters (the rest: cycle-end flush, clock sync)."""
        return sum(
            b.worker.metrics.registry.get_sample_value(
                "amigate_bus_busy_seconds_total", {"bus": b.worker.bus.name}
            )
            or 0.0
            for b in buses
            if b.worker.metrics is not None
        )

    before, reading = sum(b.client.stats.requests for b in buses), busy()
    gc.collect()
    cpu = Cpu(sims)
    started = time.perf_counter()
    results = await asyncio.gather(*(one(b) for b in buses))
    elapsed = time.perf_counter() - started
    requests = sum(b.client.stats.requests for b in buses) - before
    run = Run(elapsed, sum(r[0] for r in results), requests, sum(r[1] for r in results),
              sum(r[2] for r in results), reading=(busy() - reading) / len(buses))  # fmt: skip
    return cpu.stop(run)


async def bare(
    sims: list[SimBus], models: dict[str, MeterModel], seconds: float, procs: Simulators
) -> Run:
    """A bare sequential client: the same requests, one at a time, meter after meter."""
    transports = [await open_transport(s.url) for s in sims]
    plan = ReadPlan()
    work: list[tuple[Dlt645Client, str, list[int]]] = []
    for sim, transport in zip(sims, transports, strict=True):
        client = service_client(transport, plan)
        for address, model in sim.meters:
            dis = [
                p.source.at() for p in cycle_points(models[model]) if isinstance(p.source, DataId)
            ]
            work.append((client, address, dis))
    requests = meter_reads = 0
    gc.collect()
    cpu = Cpu(procs)
    started = time.perf_counter()
    deadline = started + seconds
    try:
        while time.perf_counter() < deadline:
            client, address, dis = work[meter_reads % len(work)]
            for di in dis:
                await client.read(address, di)
            requests += len(dis)
            meter_reads += 1
        elapsed = time.perf_counter() - started
    finally:
        for transport in transports:
            await transport.aclose()
    return cpu.stop(Run(elapsed, meter_reads, requests))


async def end_to_end(args: argparse.Namespace, models: dict[str, MeterModel], tmp: Path) -> None:
    """Part (a)."""
    per_bus = args.meters // args.endpoints
    sims = Simulators(tmp)
    try:
        served = sims.start(args.endpoints, per_bus, processes=args.sim_processes)
        url = args.database_url or f"sqlite:///{tmp / 'collect.db'}"
        engine = make_engine(url)
        upgrade(engine)
        store = Store(engine)
        buses = await open_buses(served, store, models, tmp / "spool")
        first = floor_boundary(datetime.now(UTC), INTERVAL)
        warm = await drive(buses, first, 1)  # anchors the series; the day's clock checks
        print(
            f"(a) end to end: {per_bus * len(served):,} meters behind {len(served)} TCP "
            f"endpoints, simulators in {len(sims.procs)} subprocess(es), "
            f"{'SQLite file' if not args.database_url else engine.dialect.name} store"
        )
        print(
            f"    warm-up cycle: {warm.seconds:.1f} s ({warm.requests:,} requests, "
            "clock checks included)"
        )
        header = (
            f"    {'round':<6}{'path':<32}{'meter reads/s':>14}{'requests/s':>11}"
            f"{'requests':>9}{'seconds':>8}{'CPU us/request: ours':>22}{'simulator':>10}"
            f"{'simulator busy':>15}"
        )
        print(header)
        ratios = []
        best_e2e = best_bare = 0.0
        boundary = first + INTERVAL
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        for r in range(1, args.rounds + 1):
            before = await bare(served, models, args.seconds / 2, sims)
            if profile is not None and r == args.rounds:
                profile.enable()
            e2e = await drive(buses, boundary, args.cycles, sims)
            if profile is not None:
                profile.disable()
            base = before + await bare(served, models, args.seconds / 2, sims)
            boundary += args.cycles * INTERVAL
            for label, run in (
                ("bare sequential client", base),
                (f"BusWorker x {len(buses)}, {args.cycles} cycles", e2e),
            ):
                print(
                    f"    {r:<6}{label:<32}{run.reads_s:>14,.0f}{run.requests_s:>11,.0f}"
                    f"{run.requests:>9,}{run.seconds:>8.2f}{run.cpu / run.requests * 1e6:>22,.0f}"
                    f"{run.sim_cpu / run.requests * 1e6:>10,.0f}"
                    f"{run.sim_cpu / run.seconds:>15.0%}"
                )
            if e2e.failed:
                print(f"    !! {e2e.failed} meter reads failed")
            ratios.append(e2e.requests_s / base.requests_s)
            best_e2e, best_bare = max(best_e2e, e2e.requests_s), max(best_bare, base.requests_s)
        print(
            f"    end-to-end buses spent {e2e.reading / e2e.seconds:.0%} of the time reading "
            "meters; the rest: normalizing, the cycle-end flush to spool and store"
        )
        print(
            f"    end to end / bare client (requests/s), per round: "
            f"{', '.join(f'{x:.2f}' for x in ratios)}; best / best: "
            f"{best_e2e / best_bare:.2f} (target >= 1)"
        )
        print(
            "    (bare client: half its time before the end-to-end run, half after; CPU "
            "us/request: ours = this process, all threads)"
        )
        if profile is not None:
            print(
                f"    CPU profile (thread_time) of the last end-to-end run, event loop "
                f"thread, top {args.profile}:"
            )
            stats = pstats.Stats(profile, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.profile)
        await close_buses(buses)
        engine.dispose()
    finally:
        sims.stop()


async def bus_efficiency(
    args: argparse.Namespace, models: dict[str, MeterModel], tmp: Path
) -> None:
    """Part (b)."""
    sims = Simulators(tmp)
    try:
        served = sims.start(1, args.bus_meters, wire_time=True, turnaround=args.turnaround)
        engine = make_engine(f"sqlite:///{tmp / 'bus.db'}")
        upgrade(engine)
        buses = await open_buses(served, Store(engine), models, tmp / "spool", wrap=True)
        line = buses[0].transport
        assert isinstance(line, LineTransport)
        first = floor_boundary(datetime.now(UTC), INTERVAL)
        run = await drive(buses, first, args.bus_cycles)
        done = line.exchanges
        await close_buses(buses)
        engine.dispose()
    finally:
        sims.stop()
    bt, n = line.byte_time, len(done)
    theory = sum((ex[2] + ex[3]) * bt + args.turnaround for ex in done)
    on_line = sum(ex[1] - ex[0] for ex in done)
    gaps = sum(b[0] - a[1] for a, b in itertools.pairwise(done))
    sent, received = sum(ex[2] for ex in done), sum(ex[3] for ex in done)
    print(
        f"(b) bus efficiency: {args.bus_meters} meter(s) on one emulated 2400-baud 8E1 bus "
        f"(11 bits a byte), turnaround {args.turnaround * 1000:.0f} ms, "
        f"{args.bus_cycles} cycle(s) (the first with the daily clock check), {n} requests"
    )
    print(
        f"    a request: {sent / n:.1f} bytes out + {received / n:.1f} bytes back (preambles "
        f"included) x {bt * 1000:.2f} ms + {args.turnaround * 1000:.0f} ms turnaround = "
        f"{theory / n * 1000:.1f} ms at best"
    )
    print(
        f"    achieved: {run.reads_s:.3f} meter reads/s, {n / run.seconds:.2f} requests/s; "
        f"theoretical maximum {n / theory:.2f} requests/s"
    )
    print(f"    efficiency: {theory / run.seconds:.1%} (target >= 90 %)")
    print(
        f"    lost a request: {(on_line - theory) / n * 1000:+.1f} ms in the emulated line "
        f"(simulator pacing, held request) and {gaps / max(1, n - 1) * 1000:.1f} ms "
        "between a reply and the next request (master)"
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run the selected parts."""
    models = load_models()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="amigate-bench-") as name:
        tmp = Path(name)
        if "a" not in args.skip:
            (tmp / "a").mkdir()
            await end_to_end(args, models, tmp / "a")
        if "b" not in args.skip:
            (tmp / "b").mkdir()
            await bus_efficiency(args, models, tmp / "b")
        if "c" not in args.skip:
            (tmp / "c").mkdir()
            await asyncio.to_thread(service_memory, args, tmp / "c")


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--meters", type=int, default=1000, help="(a) meters in all")
    parser.add_argument("--endpoints", type=int, default=10, help="(a) TCP endpoints (buses)")
    parser.add_argument("--cycles", type=int, default=2, help="(a) measured cycles per round")
    parser.add_argument("--seconds", type=float, default=5.0, help="(a) bare client duration")
    parser.add_argument("--rounds", type=int, default=2, help="(a) baseline + end-to-end rounds")
    parser.add_argument("--sim-processes", type=int, default=1, help="simulator subprocesses")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="(a) cProfile the last end-to-end run, print the top N",
    )
    parser.add_argument("--database-url", help="(a) store here (e.g. TimescaleDB), not SQLite")
    parser.add_argument("--bus-meters", type=int, default=4, help="(b) meters on the 2400 bus")
    parser.add_argument("--bus-cycles", type=int, default=2, help="(b) cycles")
    parser.add_argument(
        "--turnaround",
        type=float,
        default=0.02,
        help="(b) simulator's reply delay (meter turnaround), seconds",
    )
    parser.add_argument("--service-buses", type=int, default=20, help="(c) buses")
    parser.add_argument("--service-meters", type=int, default=100, help="(c) meters per bus")
    parser.add_argument("--time-scale", type=float, default=1.0, help="(c) service clock speed")
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=300.0,
        help="(c) how long to run the service after its first reads; the steady state "
        "needs >= 900 (a validation run every 15 min), e.g. 1200",
    )
    parser.add_argument(
        "--memory-every", type=float, default=10.0, help="(c) seconds between VmRSS samples"
    )
    parser.add_argument("--skip", default="", help="parts to leave out, e.g. b,c")
    args = parser.parse_args()
    if args.quick:
        args.meters, args.endpoints, args.cycles, args.seconds, args.rounds = 40, 2, 1, 0.5, 1
        args.bus_meters, args.bus_cycles = 1, 1
        args.service_buses, args.service_meters = 2, 10
        args.time_scale, args.memory_seconds, args.memory_every = 30.0, 6.0, 1.0
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
