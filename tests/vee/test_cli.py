"""``amigate vee``: batch run with progress, anomaly listing, acknowledge and resolve."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from amigate.cli import main
from amigate.storage import Store, make_engine, upgrade
from tests.vee.test_engine import START, STEP, _meter, _store_reads


class _Done:
    """What one in-process ``amigate`` run printed and returned."""

    def __init__(self, returncode: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, out, err


@pytest.fixture
def amigate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Callable[..., _Done]:
    """Run ``amigate ARGS`` in this process against a SQLite file in ``tmp_path``."""
    monkeypatch.setenv("AMIGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> _Done:
        code = main(list(args))
        captured = capsys.readouterr()
        return _Done(code, captured.out, captured.err)

    return run


def test_vee_run_lists_and_moves_anomalies(tmp_path: Path, amigate: Any) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    meter = _meter(store, 1)
    _store_reads(store, meter, [0.1] * 96, failed=range(11, 13))
    engine.dispose()
    until = (START + timedelta(days=1)).isoformat()
    done = amigate("vee", "run", "--since", START.isoformat(), "--until", until)
    assert done.returncode == 0, done.stderr
    assert "validated 96 intervals of 1 meters" in done.stdout
    assert "missing_interval" in done.stdout
    assert "1/1 meters" in done.stderr  # the progress bar
    again = amigate("vee", "run", "--since", START.isoformat(), "--until", until, "--json")
    report = json.loads(again.stdout)
    assert report["estimates"] == 0 and report["anomalies"] == {"missing_interval": 1}
    listed = json.loads(amigate("vee", "anomalies", "--json").stdout)
    assert [(a["kind"], a["meter_id"], a["start"]) for a in listed] == [
        ("missing_interval", meter.id, (START + 10 * STEP).isoformat())
    ]
    ident = str(listed[0]["id"])
    assert amigate("vee", "ack", ident, "--by", "alice").returncode == 0
    done = amigate("vee", "resolve", ident, "--by", "bob", "--comment", "modem swapped")
    assert done.returncode == 0
    listed = json.loads(amigate("vee", "anomalies", "--json", "--status", "resolved").stdout)
    assert len(listed) == 1
    refused = amigate("vee", "ack", ident, "--by", "alice")
    assert refused.returncode == 1
    assert "is resolved; it cannot be acknowledged" in refused.stderr


def test_vee_run_refuses_bad_input(amigate: Any) -> None:
    done = amigate("vee", "run", "--since", "yesterday")
    assert done.returncode == 1 and "not an ISO 8601 time" in done.stderr
    done = amigate("vee", "run", "--since", "2026-03-01", "--rule", "nope")
    assert done.returncode == 1 and "unknown validation rule(s): nope" in done.stderr
