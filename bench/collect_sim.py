"""Simulated DL/T 645 fleets for bench/collect.py: scenarios, simulator processes, the line.

The simulators run as ``amigate sim dlt645`` subprocesses, so they do not share the
interpreter lock with the process being measured. Also: the master's end of an
emulated serial line (part b) and the memory measurement of ``amigate run`` (part c).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from amigate.domain import Quality
from amigate.transports import Transport

AMIGATE = [sys.executable, "-m", "amigate.cli"]
SINGLE, THREE = "dlt645-2007-single-phase", "dlt645-2007-three-phase"


def model_of(n: int) -> str:
    """Every fourth meter is a three-phase shop meter, the others households."""
    return THREE if n % 4 == 3 else SINGLE


def address_of(bus: int, n: int) -> str:
    """The 12-digit address of meter ``n`` (0-based) of bus ``bus``."""
    return f"{bus * 100_000 + n + 1:012d}"


@dataclass(frozen=True)
class SimBus:
    """One simulated bus as served: its name, URL and meter addresses with models."""

    name: str
    url: str
    meters: tuple[tuple[str, str], ...]


def scenario_toml(
    buses: range,
    meters: int,
    *,
    wire_time: bool = False,
    baud: int = 2400,
    turnaround: float = 0.0,
) -> str:
    """A scenario of ``len(buses)`` buses with ``meters`` meters each, on free TCP ports.

    Meters are listed one by one (not as groups) so the models alternate like
    :func:`model_of` says; history is short so the simulator starts quickly.
    """
    lines = [
        "[scenario]",
        'description = "bench/collect.py"',
        "history_days = 0.05",
        "seed = 7",
    ]
    for b in buses:
        lines += [
            "",
            "[[bus]]",
            f'name = "bench-{b:02d}"',
            'listen = "tcp://127.0.0.1:0"',
            f"baud = {baud}",
            f"wire_time = {'true' if wire_time else 'false'}",
        ]
        for n in range(meters):
            lines += [
                "[[bus.meters]]",
                f'address = "{address_of(b, n)}"',
                f'model = "{model_of(n)}"',
                'load = { kind = "residential", kw = 3.0, pf = 0.95 }',
                f"response_delay = {turnaround}",
            ]
    return "\n".join(lines) + "\n"


class Simulators:
    """``amigate sim dlt645`` subprocesses serving the buses of generated scenarios."""

    def __init__(self, folder: Path) -> None:
        """Write scenario files into ``folder``; nothing runs until :meth:`start`."""
        self.folder = folder
        self.procs: list[subprocess.Popen[str]] = []
        self.buses: list[SimBus] = []

    def start(
        self,
        buses: int,
        meters: int,
        *,
        processes: int = 1,
        wire_time: bool = False,
        turnaround: float = 0.0,
        timeout: float = 120.0,
    ) -> list[SimBus]:
        """Start ``processes`` simulators sharing ``buses`` buses of ``meters`` meters.

        Returns:
            Every bus as served, in order.

        Raises:
            RuntimeError: a simulator exited or did not print its URLs in time.
        """
        processes = max(1, min(processes, buses))
        shares = [range(p, buses, processes) for p in range(processes)]
        started = []
        for index, share in enumerate(shares):
            path = self.folder / f"sim-{index}.toml"
            text = scenario_toml(share, meters, wire_time=wire_time, turnaround=turnaround)
            path.write_text(text, encoding="utf-8")
            proc = subprocess.Popen(
                [*AMIGATE, "sim", "dlt645", "--scenario", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.procs.append(proc)
            started.append((proc, share))
        deadline = time.monotonic() + timeout
        found: dict[int, SimBus] = {}
        for proc, share in started:
            assert proc.stdout is not None
            for b in share:
                line = proc.stdout.readline()
                if not line or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"simulator for bus {b} did not start")
                url, name = line.split()[:2]
                pairs = tuple((address_of(b, n), model_of(n)) for n in range(meters))
                found[b] = SimBus(name=name, url=url, meters=pairs)
        self.buses = [found[b] for b in range(buses)]
        return self.buses

    def cpu(self) -> float:
        """CPU seconds (user + system) the simulators have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        """Stop every simulator started here."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


class LineTransport:
    """The master's end of a 2400-baud half-duplex line behind a transparent serial server.

    The simulator paces its replies at the line speed but takes requests at once;
    here each request is held for its own wire time before it goes out, as the
    serial server clocks it onto the line. Bytes are counted each way and every
    exchange is timed: [request started, last reply byte, bytes sent, bytes received].
    """

    def __init__(self, inner: Transport, *, byte_time: float) -> None:
        """Wrap ``inner``; ``byte_time``: seconds per byte on the line."""
        self.inner, self.byte_time = inner, byte_time
        self.exchanges: list[list[float]] = []

    @property
    def name(self) -> str:
        """The wrapped transport's name."""
        return self.inner.name

    async def write(self, data: bytes) -> None:
        """Send ``data`` once it has been on the line for its wire time."""
        self.exchanges.append([time.perf_counter(), 0.0, len(data), 0])
        await asyncio.sleep(len(data) * self.byte_time)
        await self.inner.write(data)

    async def read(self, max_bytes: int, timeout: float) -> bytes:  # noqa: ASYNC109
        """Read, noting when the bytes arrived."""
        data = await self.inner.read(max_bytes, timeout)
        if self.exchanges:
            self.exchanges[-1][1] = time.perf_counter()
            self.exchanges[-1][3] += len(data)
        return data

    async def drain_input(self, quiet: float, *, limit: float = 10.0) -> bytes:
        """Discard late bytes (counted on the last exchange)."""
        data = await self.inner.drain_input(quiet, limit=limit)
        if self.exchanges:
            self.exchanges[-1][3] += len(data)
        return data

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()


def fleet_toml(buses: list[SimBus], *, interval_minutes: int = 1, spread_s: float = 0.0) -> str:
    """A fleet file reading ``buses`` (DL/T 645-2007 over TCP)."""
    lines = [
        "[plan.dlt645]",
        f"interval_minutes = {interval_minutes}",
        f"spread_s = {spread_s}",
        "retries = 1",
    ]
    for bus in buses:
        lines += [
            "",
            "[[bus]]",
            f'name = "{bus.name}"',
            'protocol = "dlt645-2007"',
            f'url = "{bus.url}"',
        ]
        for address, model in bus.meters:
            lines += ["[[bus.meters]]", f'address = "{address}"', f'model = "{model}"']
    return "\n".join(lines) + "\n"


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _reads_ok(port: int) -> int:
    """Meter reads the service reports as ok on /metrics (0 while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return 0
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("amigate_reads_total{") and 'result="ok"' in line
        )
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour (0 for fewer than 2)."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / var * 3600


def floor_by_minute(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lowest sample of each minute: the resident size between transient peaks."""
    lowest: dict[int, tuple[float, float]] = {}
    for t, mb in samples:
        minute = int(t // 60)
        if minute not in lowest or mb < lowest[minute][1]:
            lowest[minute] = (t, mb)
    return [lowest[m] for m in sorted(lowest)]


def service_memory(args: argparse.Namespace, tmp: Path) -> None:
    """Part (c): VmRSS of ``amigate run`` reading ``buses x meters`` simulated meters.

    The service runs for ``memory_seconds`` while VmRSS is sampled every
    ``memory_every`` seconds; printed: the resident size at the first reads, at a
    few points of the run, at its end, the peak (VmHWM), and the least-squares
    slope over the second half of the run (MB per hour: flat is about 0). A run of
    at least 15 minutes includes a validation run (every 15 minutes by default).

    The service runs 1-minute intervals on a clock ``time_scale`` times faster than
    real time (default 1: a cycle of 100 meters must fit in the interval, or every
    skipped slot becomes a MISSING row and a span, which is not the steady state);
    with a faster clock, clock checks see the simulators' real-time clocks, so the
    offset threshold is raised and time sync is off (no anomalies, no broadcasts).
    """
    buses, per_bus = args.service_buses, args.service_meters
    total = buses * per_bus
    sims = Simulators(tmp)
    proc = None
    samples: list[tuple[float, float]] = []  # (seconds since the first reads, MB)
    try:
        served = sims.start(buses, per_bus, processes=args.sim_processes)
        fleet = tmp / "fleet.toml"
        fleet.write_text(fleet_toml(served), encoding="utf-8")
        port = _free_port()
        env = {
            **os.environ,
            "AMIGATE_DATABASE_URL": f"sqlite:///{tmp / 'service.db'}",
            "AMIGATE_TIME_SCALE": str(args.time_scale),
            "AMIGATE_LOG_LEVEL": "WARNING",
            "AMIGATE_CLOCK_OFFSET_THRESHOLD_S": "3600",
            "AMIGATE_CLOCK_SYNC_LIMIT_S": "0",
        }
        log = (tmp / "service.log").open("w")
        proc = subprocess.Popen(
            [*AMIGATE, "run", "--fleet", str(fleet), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        reads = 0
        started = time.monotonic()
        first: float | None = None  # when the first reads were reported
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"amigate run exited: {(tmp / 'service.log').read_text()}")
            time.sleep(args.memory_every if first is not None else 0.5)
            reads = _reads_ok(port)
            now = time.monotonic()
            if first is None:
                if not reads:
                    if now - started > args.memory_seconds + 120:
                        raise RuntimeError("amigate run read no meter")
                    continue
                first = now
            samples.append((now - first, _status(proc.pid)["VmRSS"] / 1024))
            if now - first >= args.memory_seconds:
                break
        final = _status(proc.pid)
        proc.terminate()
        proc.wait(timeout=30)
        with sqlite3.connect(tmp / "service.db") as db:
            missing = db.execute(
                "SELECT count(*) FROM intervals WHERE quality = ?", (int(Quality.MISSING),)
            ).fetchone()[0]
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sims.stop()
    _print_memory(args, total, reads, samples, final, missing)


def _print_memory(
    args: argparse.Namespace,
    total: int,
    reads: int,
    samples: list[tuple[float, float]],
    final: dict[str, int],
    missing: int,
) -> None:
    """Print part (c) from the VmRSS samples."""
    seconds = samples[-1][0]
    half = [(t, mb) for t, mb in samples if t >= seconds / 2]
    points = [samples[round(k * (len(samples) - 1) / 6)] for k in range(1, 7)]
    print(
        f"(c) memory of amigate run: {total:,} meters ({args.service_buses} buses x "
        f"{args.service_meters}) reading simulators, SQLite, 1-minute intervals at time_scale "
        f"{args.time_scale:g}, for {seconds:.0f} s after the first reads"
    )
    print(f"    {reads:,} meter reads ({reads / total:.1f} per meter)")
    print("    VmRSS over the run: " + ", ".join(f"{t:.0f} s {mb:.1f} MB" for t, mb in points))
    print(
        f"    VmRSS at the first reads {samples[0][1]:.1f} MB, at the end "
        f"{final['VmRSS'] / 1024:.1f} MB, peak VmHWM {final['VmHWM'] / 1024:.1f} MB "
        f"(target <= 150 MB)"
    )
    print(
        f"    second half ({half[0][0]:.0f}-{seconds:.0f} s, {len(half)} samples): "
        f"VmRSS {min(mb for _, mb in half):.1f}-{max(mb for _, mb in half):.1f} MB, "
        f"slope {slope_mb_per_hour(half):+.1f} MB/hour, of each minute's lowest sample "
        f"{slope_mb_per_hour(floor_by_minute(half)):+.1f} MB/hour (target: flat; the steady "
        "state needs --memory-seconds 900 or more)"
    )
    print(
        f"    MISSING intervals stored: {missing:,} (0: every cycle fit in its interval, "
        "no slot was skipped)"
    )
    if reads < total:
        print(f"    !! only {reads:,} reads: not every meter was read once")
