"""`amigate meters add|list|remove` on a temporary SQLite database, as subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_amigate


def test_add_list_and_retire_meters(tmp_path: Path) -> None:
    env = {"AMIGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    added = run_amigate(
        "meters",
        "add",
        "--bus",
        "feeder-1",
        "--protocol",
        "dlt645-2007",
        "--address",
        "000000000042",
        "--model",
        "dlt645-2007-three-phase",
        "--ct-ratio",
        "40",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    meter = json.loads(added.stdout)
    assert (meter["address"], meter["ct_ratio"], meter["status"]) == (
        "000000000042",
        "40",
        "active",
    )
    modbus = run_amigate(
        "meters",
        "add",
        "--bus",
        "m1",
        "--protocol",
        "modbus",
        "--unit-id",
        "7",
        "--model",
        "sdm630",
        env=env,
        cwd=tmp_path,
    )
    assert modbus.returncode == 0, modbus.stderr

    # Validated against the models: the error names the problem.
    bad = run_amigate(
        "meters",
        "add",
        "--bus",
        "m1",
        "--protocol",
        "modbus",
        "--unit-id",
        "8",
        "--model",
        "dlt645-2007-single-phase",
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "speaks dlt645-2007" in bad.stderr
    bad = run_amigate(
        "meters",
        "add",
        "--bus",
        "b",
        "--protocol",
        "dlt645-2007",
        "--address",
        "12",
        "--model",
        "dlt645-2007-single-phase",
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "12 decimal digits" in bad.stderr
    twice = run_amigate(
        "meters",
        "add",
        "--bus",
        "m1",
        "--protocol",
        "modbus",
        "--unit-id",
        "7",
        "--model",
        "sdm630",
        env=env,
        cwd=tmp_path,
    )
    assert twice.returncode == 1 and "already" in twice.stderr

    table = run_amigate("meters", "list", env=env, cwd=tmp_path)
    assert table.returncode == 0
    assert "000000000042" in table.stdout and "sdm630" in table.stdout

    removed = run_amigate("meters", "remove", str(meter["id"]), env=env, cwd=tmp_path)
    assert removed.returncode == 0 and "retired" in removed.stdout
    listed = json.loads(run_amigate("meters", "list", "--json", env=env, cwd=tmp_path).stdout)
    assert [m["model"] for m in listed] == ["sdm630"]
    everything = json.loads(
        run_amigate("meters", "list", "--all", "--json", env=env, cwd=tmp_path).stdout
    )
    assert [m["status"] for m in everything] == ["retired", "active"]
    missing = run_amigate("meters", "remove", "999", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no meter with id 999" in missing.stderr
