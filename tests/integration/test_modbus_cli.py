"""``amigate sim/read/scan modbus`` as a user runs them: separate processes, loopback TCP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest

pytestmark = pytest.mark.integration


def _start_sim(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "amigate.cli", "sim", "modbus", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert "://" in url, url + (proc.stderr.read() if proc.stderr else "")
    return proc, url


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    proc, url = _start_sim(
        "--tcp", "127.0.0.1:0", "--meter", "sdm630:1", "--meter", "em24:7",
        "--meter", "dtsu666:12", "--fault", "7:unsupported:2.8.0",
    )  # fmt: skip
    assert url.startswith("modbus+tcp://127.0.0.1:")
    try:
        yield url
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def _amigate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amigate.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_read_json_lists_every_point(sim_url: str) -> None:
    result = _amigate(
        "read", "modbus", "--url", sim_url, "--unit-id", "1", "--model", "sdm630", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 24
    by_channel = {r["channel"]: r for r in rows}
    assert by_channel["32.7.0"]["unit"] == "V"
    assert Decimal(210) < Decimal(by_channel["32.7.0"]["value"]) < Decimal(250)
    assert by_channel["1.8.0"]["unit"] == "kWh" and Decimal(by_channel["1.8.0"]["value"]) > 0
    assert by_channel["1.7.0"]["unit"] == "kW"  # the meter's W, normalized


def test_read_text_shows_unsupported_points(sim_url: str) -> None:
    result = _amigate("read", "modbus", "--url", sim_url, "--unit-id", "7", "--model", "em24")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 20
    assert any(line.split()[0] == "2.8.0" and "unsupported" in line for line in lines)
    voltage = next(line for line in lines if line.split()[0] == "32.7.0")
    assert voltage.endswith(" V")


def test_read_a_silent_id_is_a_one_line_timeout(sim_url: str) -> None:
    result = _amigate(
        "read", "modbus", "--url", sim_url, "--unit-id", "99", "--model", "sdm630",
        "--timeout", "0.2", "--retries", "0",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("amigate: error: ID 99 FC4")


def test_scan_finds_the_answering_ids_and_their_models(sim_url: str) -> None:
    result = _amigate(
        "scan", "modbus", "--url", sim_url, "--ids", "1-15", "--timeout", "0.1", "--json"
    )
    assert result.returncode == 0, result.stderr
    found = {r["unit_id"]: r["models"] for r in json.loads(result.stdout)}
    assert set(found) == {1, 7, 12}
    assert found[1][0] == "sdm630"
    assert found[7][0] in ("em24", "em340") and "em24" in found[7]
    assert found[12] == ["dtsu666"]


def test_rtu_over_tcp_and_bad_urls() -> None:
    proc, url = _start_sim("--rtu-tcp", "127.0.0.1:0", "--meter", "abb-b23:3")
    try:
        assert url.startswith("rtu+tcp://")
        result = _amigate(
            "read", "modbus", "--url", url, "--unit-id", "3", "--model", "abb-b23", "--json"
        )
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == 23
        wrong = _amigate("read", "modbus", "--url", url.replace("rtu+tcp", "tcp"),
                         "--unit-id", "3", "--model", "abb-b23")  # fmt: skip
        assert wrong.returncode == 1 and "rtu+tcp://HOST:PORT" in wrong.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
