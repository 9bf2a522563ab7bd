"""API benchmark: latency of billing reads over HTTP on SQLite and TimescaleDB.

Loads 10,000 meters x 30 days of 15-minute intervals (28.8 M rows, plus one
register read per meter and local day), starts ``amigate run`` on the database
and measures, under 8 concurrent clients over loopback HTTP (8 processes, each
one keep-alive connection, sharing the machine's CPUs with the server):

* one meter-month interval series (2,880 intervals), as items and as blocks of values;
* one meter-month billing determinant;
* determinants of 1,000 meters in one batch request.

Before serving, the day totals (which determinants read) and the day series (which
interval series read) are built for the loaded month and, on TimescaleDB, its closed
chunks are rewritten in meter order (what ``amigate run`` does in the background as
days close); the time it takes is printed, and the service's own upkeep is switched
off while measuring.

Targets: p99 <= 25 ms for the series and the determinant; <= 2 s for the batch.
Each line also prints the CPU time per request of the server process and of the
whole machine (server, database, clients), which bounds the latency: with 8
clients on C CPUs, a request waits about 8 x machine CPU / C. On a virtual machine
it also prints the share of the CPUs its host gave to others meanwhile ("stolen"):
a run with much of it measures the host, not amigate.

    python bench/api.py [--meters N] [--days N] [--requests N] [--batches N]
                        [--processes N] [--clients N] [--pg-url URL]
                        [--sqlite-path PATH] [--skip-pg] [--skip-sqlite]

``--processes`` is the service's ``api_processes`` (1 by default).

Before each backend it prints how long a fixed Python loop took: on a shared virtual
machine the same run can measure up to twice as slow when the machine is slow.

Loaded data is kept (``--sqlite-path``, the ``amigate_bench_api`` database) and
reused when it already holds the same number of rows, so a second run measures
at once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from amigate.billing.totals import build
from amigate.config import load_settings
from amigate.domain import Meter, Protocol
from amigate.storage import Store, make_engine, upgrade
from amigate.storage.api_keys import ApiKeys
from amigate.storage.chunk_order import order_closed_chunks
from amigate.storage.ingest import INTERVALS, REGISTER_READS, ingest_rows, time_encoder

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5433/amigate_bench_api"
ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 4, 1, tzinfo=ZONE)
STEP = timedelta(minutes=15)
CLIENTS = 8
PROCESSES = 1


def _value(meter: int, slot: int) -> int:
    """Energy of one interval in micro-kWh, at the 0.01 kWh resolution of DL/T 645."""
    return ((meter * 7 + slot) % 199 + 1) * 10_000


def load(engine: Engine, meters: int, days: int) -> None:
    """Store the meters, their intervals (day by day, time-major) and daily register reads."""
    store = Store(engine)
    expected = meters * days * 96
    if store.count("intervals") == expected and store.count("meters") == meters:
        print(f"  {expected:,} intervals already loaded")
        return
    if store.count("intervals"):
        raise SystemExit(f"{engine.url}: holds other data; empty it or use another database")
    store.register_meters([
        Meter(address=f"{m:012d}", protocol=Protocol.DLT645_2007, model="bench", bus="b1",
              transformer_area=f"T{m % 100}")
        for m in range(1, meters + 1)
    ])  # fmt: skip
    cid = store.channel_id("1.8.0")
    when = time_encoder(engine)
    register = dict.fromkeys(range(1, meters + 1), 1_000_000_000)
    started = time.perf_counter()
    for day in range(days + 1):
        midnight = START + timedelta(days=day)
        reads = [(m, cid, when(midnight), register[m], when(midnight), 0, None)
                 for m in range(1, meters + 1)]  # fmt: skip
        ingest_rows(engine, REGISTER_READS, reads)
        if day == days:
            break
        rows = []
        for i in range(96):
            slot = day * 96 + i
            at = when(midnight + i * STEP)
            for m in range(1, meters + 1):
                value = _value(m, slot)
                register[m] += value
                rows.append((m, cid, at, 900, value, 0, 0))
        ingest_rows(engine, INTERVALS, rows)
        done = (day + 1) * 96 * meters
        rate = done / (time.perf_counter() - started)
        print(f"  day {day + 1}/{days}: {done:,} intervals, {rate:,.0f} rows/s", flush=True)


def _fresh_pg(url: str) -> Engine:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                              {"d": parsed.database}).scalar()  # fmt: skip
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    return make_engine(url)


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    """Start ``amigate run`` (API only) on the database and wait until it is ready (every
    API process listening)."""
    env = {**os.environ, "AMIGATE_DATABASE_URL": url, "AMIGATE_API_PORT": str(port),
           "AMIGATE_API_RATE_LIMIT": "1000000", "AMIGATE_API_RATE_BURST": "1000000",
           "AMIGATE_LOG_LEVEL": "WARNING", "AMIGATE_DAY_TOTALS_EVERY_MINUTES": "0",
           "AMIGATE_API_PROCESSES": str(PROCESSES)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "amigate.cli", "run"], env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("amigate run did not start")
        time.sleep(0.2)


class Http:
    """A keep-alive HTTP/1.1 client on the standard library, as light as a load generator
    should be: httpx spends about 3 ms of CPU per request here, which the server's two
    CPUs would pay for; this client about 0.5 ms."""

    def __init__(self, base: str, key: str) -> None:
        """Connect to ``base`` (``http://host:port``), sending ``key`` with each request."""
        netloc = urlsplit(base).netloc
        host, port = netloc.rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self._headers = {"X-API-Key": key}

    def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        """GET ``path`` with query ``params``: status and body."""
        self._conn.request("GET", f"{path}?{urlencode(params)}", headers=self._headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def post(self, path: str, document: object) -> tuple[int, bytes]:
        """POST ``document`` as JSON to ``path``: status and body."""
        headers = {**self._headers, "Content-Type": "application/json"}
        self._conn.request("POST", path, body=json.dumps(document), headers=headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _loop_seconds() -> float:
    """CPU time of a fixed Python loop: how fast this machine runs Python right now (on a
    shared virtual machine it varies by up to half within minutes)."""
    started = time.process_time()
    total = 0
    for i in range(3_000_000):
        total += i * i % 7
    return time.process_time() - started


def _stolen_seconds() -> float:
    """CPU time the host of this virtual machine gave to others while it wanted to run
    (``steal`` in ``/proc/stat``, all CPUs): runs with much of it measure the host."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of process ``pid`` and its child processes (the service's
    API processes), or of the whole machine when None (Linux ``/proc``; without the time
    a virtual machine's CPUs were taken by its host: see :func:`_stolen_seconds`)."""
    tick = os.sysconf("SC_CLK_TCK")
    if pid is None:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(fields[:7]) - fields[3] - fields[4]) / tick  # all but idle and iowait
    total = 0
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if stat_file.parent.name == str(pid) or stat[1] == str(pid):  # itself, or a child
            total += sum(int(x) for x in stat[11:13])
    return total / tick


def measure(
    label: str, base: str, key: str, requests: int, call: Callable[[Http, int], None],
    server: int,
) -> list[float]:  # fmt: skip
    """Run ``call`` ``requests`` times in each of ``CLIENTS`` client processes; print p50/p99.

    Each client is a process of its own, as separate billing systems are: client threads
    would share one interpreter lock and measure the load generator instead of the server.
    """
    context = multiprocessing.get_context("fork")  # the calls are closures
    results: multiprocessing.queues.Queue[tuple[list[float], str | None]] = context.Queue()
    ready = context.Barrier(CLIENTS)

    def client(index: int) -> None:
        mine: list[float] = []
        error = None
        try:
            http = Http(base, key)
            call(http, index)  # warm the connection and the caches of this client
            ready.wait()
            for n in range(requests):
                started = time.perf_counter()
                call(http, index * requests + n)
                mine.append(time.perf_counter() - started)
            http.close()
        except BaseException as exc:  # reported by the parent
            error = repr(exc)
        results.put((mine, error))

    procs = [context.Process(target=client, args=(i,)) for i in range(CLIENTS)]
    for p in procs:
        p.start()
    served, machine, stolen = _cpu_seconds(server), _cpu_seconds(), _stolen_seconds()
    started = time.perf_counter()
    latencies: list[float] = []
    errors = []
    for _ in procs:
        mine, error = results.get()
        latencies.extend(mine)
        if error is not None:
            errors.append(error)
    served, machine = _cpu_seconds(server) - served, _cpu_seconds() - machine
    stolen = (_stolen_seconds() - stolen) / (time.perf_counter() - started) / (os.cpu_count() or 1)
    for p in procs:
        p.join()
    if errors:
        raise SystemExit(f"{label}: {errors[0]}")
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"  {label:<36} n={len(ms):>4}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms   CPU per "
          f"request: server {served / len(ms) * 1e3:6.2f} ms, machine "
          f"{machine / len(ms) * 1e3:6.2f} ms; stolen {stolen:4.0%}")  # fmt: skip
    return ms


def bench(name: str, url: str, engine: Engine, meters: int, days: int, requests: int,
          batches: int) -> None:  # fmt: skip
    """Load (if needed), serve and measure one backend."""
    print(f"{name}: (a fixed Python loop took {_loop_seconds():.2f} s)")
    upgrade(engine)
    load(engine, meters, days)
    key = ApiKeys(engine).create("bench", ["read", "billing"])[1]
    settings = load_settings(None)
    started = time.perf_counter()
    built = build(Store(engine), settings.tou.classifier(ZONE),
                  interval_s=int(STEP.total_seconds()), days=days + 1,
                  now=START + timedelta(days=days + 1))  # fmt: skip
    print(f"  day totals: {built.totals:,} rows and {built.series:,} day series built in "
          f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    chunks = order_closed_chunks(engine, ended_before=START + timedelta(days=days + 1),
                                 limit=days + 1)  # fmt: skip
    if chunks:
        took = time.perf_counter() - started
        print(f"  {chunks} chunks of intervals rewritten in meter order in {took:.1f} s")
    engine.dispose()
    port = 18000 + os.getpid() % 1000
    proc = serve(url, port)
    base = f"http://127.0.0.1:{port}"
    period = {"start": START.isoformat(), "end": (START + timedelta(days=days)).isoformat()}
    batch_size = min(1000, meters)

    def series(http: Http, n: int) -> None:
        status, body = http.get(f"/v1/meters/{n * 7919 % meters + 1}/intervals", period)
        # Count without parsing: the clients share the 2 CPUs with the server.
        assert status == 200 and body.count(b'"quality"') == days * 96, body[:200]

    def blocks(http: Http, n: int) -> None:
        status, body = http.get(f"/v1/meters/{n * 7919 % meters + 1}/intervals/blocks", period)
        assert status == 200, body[:200]
        assert sum(len(b["values"]) for b in json.loads(body)["items"]) == days * 96, body[:200]

    def determinant(http: Http, n: int) -> None:
        status, body = http.get(f"/v1/meters/{n * 7919 % meters + 1}/determinants", period)
        assert status == 200 and json.loads(body)["billable"], body[:300]

    def batch(http: Http, n: int) -> None:
        first = n * batch_size % meters
        ids = [(first + i) % meters + 1 for i in range(batch_size)]
        status, body = http.post("/v1/determinants", {"meter_ids": ids, **period})
        assert status == 200 and all(d["billable"] for d in json.loads(body)["items"]), body[:300]

    try:
        measure(f"meter-month series ({days * 96} intervals)", base, key, requests, series,
                proc.pid)  # fmt: skip
        measure("meter-month series as blocks", base, key, requests, blocks, proc.pid)
        measure("meter-month determinant", base, key, requests, determinant, proc.pid)
        if batches:
            measure(f"batch of {batch_size} determinants", base, key, batches, batch, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    """Parse arguments and run the benchmark on each backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=50, help="per client, per measurement")
    parser.add_argument("--batches", type=int, default=2, help="batch requests per client")
    parser.add_argument("--pg-url", default=os.environ.get("AMIGATE_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument(
        "--sqlite-path",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "amigate-bench-api.db",
    )
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=PROCESSES,
                        help="API processes of the service (setting api_processes)")  # fmt: skip
    args = parser.parse_args()
    globals()["CLIENTS"], globals()["PROCESSES"] = args.clients, args.processes
    print(f"{platform.node()}: Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"{args.meters:,} meters x {args.days} days = {args.meters * args.days * 96:,} "
          f"intervals; {args.clients} concurrent clients")  # fmt: skip
    if not args.skip_sqlite:
        url = f"sqlite:///{args.sqlite_path}"
        bench("SQLite", url, make_engine(url), args.meters, args.days, args.requests,
              args.batches)  # fmt: skip
    if not args.skip_pg:
        bench("TimescaleDB", args.pg_url, _fresh_pg(args.pg_url), args.meters, args.days,
              args.requests, args.batches)  # fmt: skip


if __name__ == "__main__":
    main()
