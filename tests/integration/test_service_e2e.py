"""`amigate demo` and `amigate run --fleet` as subprocesses over real HTTP, TCP and SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.helpers import AMIGATE, free_port

pytestmark = pytest.mark.integration


@contextmanager
def _process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*AMIGATE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"exited early while waiting for {what}:\n{_output(proc)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {limit:g} s:\n{_output(proc)}")
        time.sleep(0.2)


def _output(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.kill()
    return proc.stdout.read() if proc.stdout else ""


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def _reads_ok(base: str) -> float:
    response = _get(base + "/metrics")
    if response is None or response.status_code != 200:
        return 0.0
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        if family.name == "amigate_reads":
            total += sum(
                s.value
                for s in family.samples
                if s.name == "amigate_reads_total" and s.labels["result"] == "ok"
            )
    return total


def _intervals(db: Path) -> int:
    if not db.exists():
        return 0
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM intervals WHERE quality = 0")).scalar_one()
            )
    except Exception:  # the schema is not there yet
        return 0
    finally:
        engine.dispose()


def _stop_cleanly(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"did not stop on SIGTERM:\n{_output(proc)}") from None
    output = _output(proc)
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    return output


def test_demo_serves_health_metrics_and_stores_intervals(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "demo.db"
    with _process(
        "demo",
        "--meters",
        "12",
        "--speed",
        "20",
        "--port",
        str(port),
        "--db",
        str(db),
        "--dir",
        str(tmp_path / "demo"),
        cwd=tmp_path,
    ) as proc:
        _wait(
            "/healthz",
            lambda: (r := _get(base + "/healthz")) is not None and r.is_success,
            proc,
            60,
        )
        ready = _get(base + "/readyz")
        assert ready is not None and ready.status_code == 200, ready and ready.text
        metrics = _get(base + "/metrics")
        assert metrics is not None and metrics.status_code == 200
        names = {f.name for f in text_string_to_metric_families(metrics.text)}
        assert {
            "amigate_reads",
            "amigate_bus_utilization_ratio",
            "amigate_collection_success_ratio",
            "amigate_meters_unavailable",
        } <= names
        _wait("reads ok in /metrics", lambda: _reads_ok(base) > 0, proc, 60)
        _wait("intervals in the database", lambda: _intervals(db) > 0, proc, 60)
        output = _stop_cleanly(proc)
    assert "faulty meters" in output and "/metrics" in output
    assert (tmp_path / "demo" / "fleet.toml").is_file()


SCENARIO = """
[scenario]
history_days = 1
[[bus]]
name = "sim"
listen = "tcp://127.0.0.1:{port}"
[[bus.groups]]
model = "dlt645-2007-single-phase"
count = 3
first_address = "000000000001"
load = {{ kind = "constant", kw = 30, noise = 0 }}
"""

FLEET = """
[plan.dlt645]
interval_minutes = 1
spread_s = 1
timeout_s = 0.5
retries = 0
[[bus]]
name = "feeder"
protocol = "dlt645-2007"
url = "tcp://127.0.0.1:{port}"
{meters}
"""


def test_run_with_a_fleet_stores_intervals_and_stops_on_sigterm(tmp_path: Path) -> None:
    sim_port, api_port = free_port(), free_port()
    (tmp_path / "scenario.toml").write_text(SCENARIO.format(port=sim_port))
    meters = "\n".join(
        f'[[bus.meters]]\naddress = "00000000000{i}"\nmodel = "dlt645-2007-single-phase"'
        for i in (1, 2, 3)
    )
    (tmp_path / "fleet.toml").write_text(FLEET.format(port=sim_port, meters=meters))
    db = tmp_path / "run.db"
    env = {"AMIGATE_DATABASE_URL": f"sqlite:///{db}", "AMIGATE_TIME_SCALE": "20",
           "AMIGATE_VEE_EVERY_MINUTES": "1"}  # fmt: skip
    with _process("sim", "dlt645", "--scenario", "scenario.toml", cwd=tmp_path) as sim:
        _wait("the simulator", lambda: _port_open(sim_port), sim, 30)
        with _process(
            "run", "--fleet", "fleet.toml", "--port", str(api_port), cwd=tmp_path, env=env
        ) as proc:
            _wait("intervals in the database", lambda: _intervals(db) >= 3, proc, 60)
            ready = _get(f"http://127.0.0.1:{api_port}/readyz")
            assert ready is not None and ready.status_code == 200
            # Validation runs on its own as data arrives (every scaled minute here).
            _wait("a validation run", lambda: _validated(api_port), proc, 60)
            # Day totals are built a (scaled) minute after the start, then on their schedule.
            _wait("a day-totals build", lambda: _counted(api_port, "amigate_day_totals_runs_total"),
                  proc, 60)  # fmt: skip
            upkeep = _get(f"http://127.0.0.1:{api_port}/metrics")
            assert upkeep is not None
            for step in ("day_totals", "feed_prune", "chunk_order"):  # each counted on its own
                assert f'amigate_upkeep_steps_total{{result="ok",step="{step}"}} ' in upkeep.text
            output = _stop_cleanly(proc)
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
    assert "bus feeder: stopped" in output


def _validated(port: int) -> bool:
    return _counted(port, "amigate_validation_runs_total")


def _counted(port: int, counter: str) -> bool:
    response = _get(f"http://127.0.0.1:{port}/metrics")
    if response is None:
        return False
    line = counter + '{result="ok"}'
    values = [float(x.split()[-1]) for x in response.text.splitlines() if x.startswith(line)]
    return bool(values) and values[0] >= 1


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
