"""More API processes on the service's port (setting ``api_processes``)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from multiprocessing import Pipe
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from amigate.api.fair_accept import ABSENT
from amigate.api.processes import ApiProcesses, ServiceLink, bind
from amigate.config import load_settings
from amigate.errors import ConfigError, PortUnavailable, ServiceUnreachable
from amigate.storage import Store, make_engine, upgrade
from amigate.storage.api_keys import ApiKeys
from tests.api.conftest import JAN1, Q, add_meter, add_series
from tests.helpers import AMIGATE, free_port


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid`` that run amigate's API (spawned Pythons)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z" and b"multiprocessing" in cmdline:
            found.add(int(stat.parent.name))
    return found - _trackers(pid)


def _trackers(pid: int) -> set[int]:
    """multiprocessing's resource tracker, a child of the service too (not an API process)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"resource_tracker" in stat.read_bytes():
                out.add(int(stat.parent.name))
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _maps(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has the file ``path`` mapped into its memory."""
    name = str(path.resolve())
    return any(line.endswith(name) for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def _until(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def _serving(
    folder: Path, values: list[Decimal | None], **env: str
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``amigate run`` (API only) with ``api_processes`` = 2 (and settings ``env``) over a
    database in ``folder`` holding one meter with ``values`` as 15-minute intervals from
    ``JAN1``: the process, base URL and a key (read, billing)."""
    folder.mkdir(exist_ok=True)
    url = f"sqlite:///{folder / 'a.db'}"
    engine = make_engine(url)
    upgrade(engine)
    key = ApiKeys(engine).create("t", ["read", "billing"])[1]
    store = Store(engine)
    add_series(store, add_meter(store), JAN1, values)
    engine.dispose()
    port = free_port()
    env = {**os.environ, "AMIGATE_DATABASE_URL": url, "AMIGATE_API_PORT": str(port),
           "AMIGATE_API_PROCESSES": "2", **env}  # fmt: skip
    proc = subprocess.Popen([*AMIGATE, "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            return httpx.get(base + "/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _until("the service and its API process are ready", ready)
        yield proc, base, key
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``amigate run`` (API only) with ``api_processes`` = 2 over a database holding one meter
    with two hours of intervals: the process, base URL and a key (read, billing)."""
    with _serving(tmp_path, [Decimal("0.25")] * 8) as started:
        yield started


def test_the_api_processes_serve_the_port_and_the_service_does_not(
    service: tuple[subprocess.Popen[str], str, str], tmp_path: Path
) -> None:
    """With api_processes = 2, two API processes serve; the service only opens the port,
    so every connection is answered while it is stopped and billing reads take none of
    its CPU."""
    proc, base, key = service
    assert len(_children(proc.pid)) == 2
    os.kill(proc.pid, signal.SIGSTOP)  # the collection process answers nothing now
    try:
        for _ in range(12):  # new connections: none waits for the service
            r = httpx.get(base + "/v1/meters", headers={"X-API-Key": key}, timeout=2)
            assert r.status_code == 200
        # They read the database through a memory map (api_sqlite_mmap_mb); the service,
        # whose collection must survive a failing disk read, copies pages instead.
        assert any(_maps(child, tmp_path / "a.db") for child in _children(proc.pid))
        assert not _maps(proc.pid, tmp_path / "a.db")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    metrics = httpx.get(base + "/metrics", timeout=10)
    assert metrics.status_code == 200 and b"amigate_reads" in metrics.content


def test_api_processes_answer_series_determinants_and_concurrent_batches(
    service: tuple[subprocess.Popen[str], str, str],
) -> None:
    """One meter's reads run in an API process's event loop, batches in a worker thread one
    at a time: all are answered, concurrent batches included."""
    _proc, base, key = service
    headers = {"X-API-Key": key}
    period = {"start": JAN1.isoformat(), "end": (JAN1 + 8 * Q).isoformat()}
    series = httpx.get(base + "/v1/meters/1/intervals", params=period, headers=headers, timeout=10)
    assert series.status_code == 200, series.text
    assert [i["value"] for i in series.json()["items"]] == ["0.250000"] * 8
    one = httpx.get(base + "/v1/meters/1/determinants", params=period, headers=headers, timeout=10)
    assert one.status_code == 200 and one.json()["consumption"] == "2.000000", one.text
    body = {"meter_ids": [1, 2], **period}

    def batch() -> httpx.Response:
        return httpx.post(base + "/v1/determinants", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: batch(), range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    for a in answers:
        known, unknown = a.json()["items"]
        assert known == one.json() and unknown["reasons"] == ["unknown_meter"]


def _served_by(port: int, pids: set[int]) -> dict[int, int]:
    """Which of processes ``pids`` holds each established connection to ``port`` on the
    loopback: {the client's port: pid} (from ``/proc``)."""
    inodes = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) == port and state == "01" and inode in inodes:
            found[int(remote.split(":")[1], 16)] = inodes[inode]
    return found


def _connected(base: str, key: str) -> http.client.HTTPConnection:
    """A keep-alive connection that has been answered once."""
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=5)
    conn.request("GET", "/v1/meters", headers={"X-API-Key": key})
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    answer.read()
    return conn


def _spread(base: str, proc: subprocess.Popen[str], conns: list[http.client.HTTPConnection],
            ) -> Counter[int]:  # fmt: skip
    """How many of ``conns`` each API process serves."""
    port = urlsplit(base).port or 0
    owners = _served_by(port, _children(proc.pid))
    return Counter(owners[c.sock.getsockname()[1]] for c in conns)


def test_connections_are_spread_evenly_over_the_api_processes(
    service: tuple[subprocess.Popen[str], str, str],
) -> None:
    """8 keep-alive clients connecting at once get 4 connections in each process (the kernel
    alone split them 5 / 3 or 6 / 2), and a process whose clients left gets the next ones."""
    proc, base, key = service
    time.sleep(0.3)  # the readiness probes' connections closed
    with ThreadPoolExecutor(8) as pool:
        conns = list(pool.map(lambda _: _connected(base, key), range(8)))
    spread = _spread(base, proc, conns)
    assert sorted(spread.values()) == [4, 4], spread
    left = min(spread)
    for conn in conns:
        if _spread(base, proc, [conn]) == {left: 1}:
            conn.close()
    time.sleep(0.3)  # seen closed
    new = [_connected(base, key) for _ in range(4)]  # one at a time
    assert _spread(base, proc, new) == {left: 4}
    for conn in conns + new:
        conn.close()


def test_a_connection_waiting_for_a_busy_process_is_taken_by_another(
    service: tuple[subprocess.Popen[str], str, str],
) -> None:
    """An API process busy (here: stopped) while it has the fewest connections leaves new
    ones waiting only a moment: the other process takes them."""
    proc, base, key = service
    time.sleep(0.3)  # the readiness probes' connections closed: both processes have none
    busy, other = sorted(_children(proc.pid))
    os.kill(busy, signal.SIGSTOP)
    try:
        started = time.monotonic()
        conns = [_connected(base, key) for _ in range(2)]  # the second one waits first
        assert time.monotonic() - started < 3
        assert _spread(base, proc, conns) == {other: 2}
    finally:
        os.kill(busy, signal.SIGCONT)
    for conn in conns:
        conn.close()


def _minor_faults(pid: int) -> int:
    """Pages process ``pid`` has faulted in without reading them from disk."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc allocator option")
def test_api_processes_answer_large_responses_from_a_reserve_of_freed_memory(
    tmp_path: Path,
) -> None:
    """Setting ``api_heap_reserve_mb``: an API process builds each meter-month series
    (600 kB of JSON) in the pages the previous one freed; without a reserve it faults in
    fresh pages for every response."""
    month = [Decimal("0.25")] * (30 * 96)
    period = {"start": JAN1.isoformat(), "end": (JAN1 + len(month) * Q).isoformat()}
    per_series = {}
    for reserve in ("0", "32"):
        with _serving(tmp_path / reserve, month, AMIGATE_API_HEAP_RESERVE_MB=reserve) as (
            proc, base, key,
        ), httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:

            def series() -> None:  # on one connection: one API process answers them all
                answer = client.get("/v1/meters/1/intervals", params=period)
                assert answer.status_code == 200 and answer.content.count(b'"quality"') == 2880

            for _ in range(3):
                series()
            before = sum(map(_minor_faults, _children(proc.pid)))
            for _ in range(10):
                series()
            per_series[reserve] = (sum(map(_minor_faults, _children(proc.pid))) - before) / 10
    assert per_series["0"] > 200 and per_series["32"] < 20, per_series


def test_the_rate_limit_holds_for_the_port_and_across_a_restarted_process(
    tmp_path: Path,
) -> None:
    """With ``api_processes`` = 2 the processes count a key's requests in one table: a
    burst of 5 lets 5 requests through in all, however the connections are spread over
    the processes (each alone would let 5 through), and an API process started
    again after a crash counts in the same table."""
    with _serving(tmp_path, [Decimal("0.25")] * 8, AMIGATE_API_RATE_LIMIT="0.01",
                  AMIGATE_API_RATE_BURST="5") as (proc, base, key):  # fmt: skip

        def statuses(count: int) -> list[int]:  # each on a connection of its own
            return [httpx.get(base + "/v1/meters", headers={"X-API-Key": key},
                              timeout=10).status_code for _ in range(count)]  # fmt: skip

        assert statuses(3) == [200] * 3
        crashed = min(_children(proc.pid))
        os.kill(crashed, signal.SIGKILL)
        _until("an API process is started again", lambda: crashed not in _children(proc.pid)
               and len(_children(proc.pid)) == 2)  # fmt: skip
        _until("it listens", lambda: httpx.get(base + "/readyz", timeout=5).status_code == 200)
        after = statuses(12)
        assert after.count(200) == 2 and after.count(429) == 10, after
        refused = httpx.get(base + "/v1/meters", headers={"X-API-Key": key}, timeout=10)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_api_processes_run_on_uvloop(service: tuple[subprocess.Popen[str], str, str]) -> None:
    """API processes serve HTTP only, on uvloop's event loop (libuv: less CPU a request);
    the service keeps asyncio's loop for its buses."""
    proc, _base, _key = service
    for child in _children(proc.pid):
        assert "uvloop" in Path(f"/proc/{child}/maps").read_text()
    assert "uvloop" not in Path(f"/proc/{proc.pid}/maps").read_text()


@pytest.mark.parametrize("processes", [1, 2])
def test_each_api_process_readies_its_database_connections_before_it_serves(
    tmp_path: Path, processes: int
) -> None:
    """Each API process (or the service, when it serves the API itself) ran the billing
    reads on each of its pooled connections (``api_connections``, 8 by default) before
    answering (amigate.api.v1.warm_up)."""
    values: list[Decimal | None] = [Decimal("0.25")] * 8
    with _serving(tmp_path, values, AMIGATE_API_PROCESSES=str(processes)) as (proc, _b, _k):
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    readied = re.findall(r"API warm-up: (\d+) database connections readied", output)
    assert readied == ["8"] * processes, output


def test_a_dead_api_process_is_started_again_and_all_end_with_the_service(
    service: tuple[subprocess.Popen[str], str, str],
) -> None:
    proc, base, _key = service
    first, other = sorted(_children(proc.pid))
    os.kill(first, signal.SIGKILL)
    _until("another API process", lambda: len(_children(proc.pid) - {first}) == 2)
    (second,) = _children(proc.pid) - {first, other}
    _until("ready again", lambda: httpx.get(base + "/readyz", timeout=2).status_code == 200)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    output = proc.stdout.read() if proc.stdout else ""
    assert f"API process {first} exited (code -9); starting another" in output
    _until("the API processes end with the service",
           lambda: not _alive(second) and not _alive(other), timeout=5)  # fmt: skip


def test_api_processes_end_when_the_service_is_killed(
    service: tuple[subprocess.Popen[str], str, str],
) -> None:
    proc, _base, _key = service
    children = _children(proc.pid)
    assert len(children) == 2
    proc.kill()  # no chance to stop them
    proc.wait()
    _until("the orphaned API processes stop",
           lambda: not any(_alive(c) for c in children), timeout=10)  # fmt: skip


def test_the_link_to_the_service_answers_and_reports_its_loss() -> None:
    ours, theirs = Pipe()
    settings = load_settings(None, api_processes=2)
    processes = ApiProcesses(
        settings, "sqlite:///x.db", render=lambda: b"m 1\n", readiness=lambda: (False, "buses"),
    )  # fmt: skip
    processes._open[1] = 3  # the process in slot 1 has 3 connections open
    answering = threading.Thread(target=processes._answer, args=(ours, 42, 1))
    answering.start()
    link = ServiceLink(theirs)
    assert link.render() == b"m 1\n"
    assert link.readiness() == (False, "buses")
    link.tell("listening")
    assert link.render() == b"m 1\n"  # the news needed no answer
    assert processes._listening == {42}
    theirs.close()  # the API process ended: the service stops answering it
    answering.join(5)
    assert not answering.is_alive() and processes._listening == set()
    assert processes._open[1] == ABSENT  # the others no longer leave connections to it

    service_end, process_end = Pipe()
    service_end.close()  # the service is gone
    orphan = ServiceLink(process_end)
    with pytest.raises(ServiceUnreachable, match="did not answer for metrics"):
        orphan.render()
    assert orphan.readiness() == (False, "the service did not answer for ready")


def test_more_api_processes_need_a_database_they_can_share() -> None:
    settings = load_settings(None, api_processes=2)
    with pytest.raises(ConfigError, match="in-memory"):
        ApiProcesses(settings, "sqlite://", render=bytes, readiness=lambda: (True, ""))


def test_a_port_in_use_is_refused() -> None:
    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(PortUnavailable, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        first.close()
    bind("127.0.0.1", port).close()  # free again


def test_connections_to_the_api_socket_send_without_delay() -> None:
    """Nagle's algorithm off: a response written as headers, then body, is not held back
    until the client's delayed ACK (40 ms)."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.2)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
