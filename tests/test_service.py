"""The ``amigate`` command end to end: db, config, run with the API on a real HTTP server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from amigate.config import load_settings
from amigate.errors import StorageUnavailable
from amigate.meter_models import MeterModel
from amigate.service import Service, TimeBase
from amigate.storage import Store, make_engine
from amigate.storage.migrate import head_revision
from tests.conftest import PG_URL
from tests.helpers import free_port, run_amigate, serving


def _head() -> str:
    engine = make_engine("sqlite://")
    try:
        return head_revision(engine)
    finally:
        engine.dispose()


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    env = {"AMIGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    assert run_amigate("db", "current", env=env).returncode == 3  # empty: behind head
    upgraded = run_amigate("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    head = _head()
    assert f"schema upgraded from empty to {head}" in upgraded.stdout
    current = run_amigate("db", "current", env=env)
    assert (current.returncode, current.stdout.strip()) == (0, f"{head} (head)")
    assert run_amigate("db", "check", env=env).returncode == 0


def test_run_on_the_embedded_default_serves_health(tmp_path: Path) -> None:
    port = free_port()
    with serving("run", "--port", str(port), port=port, cwd=tmp_path) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0", "database": "sqlite",
                               "schema": _head()}  # fmt: skip
    assert (tmp_path / "amigate.db").exists()  # zero set-up: ./amigate.db, migrated on start


def test_run_on_timescaledb_serves_health(pg_engine: Engine) -> None:
    port = free_port()
    env = {"AMIGATE_DATABASE_URL": PG_URL, "AMIGATE_API_PORT": str(port)}
    with serving("run", port=port, env=env) as client:
        body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "postgresql"


def test_run_refuses_an_unmigrated_postgresql(pg_engine: Engine) -> None:
    admin = create_engine(pg_engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "amigate_empty" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "amigate_empty"'))
    admin.dispose()
    url = pg_engine.url.set(database="amigate_empty").render_as_string(hide_password=False)
    result = run_amigate("run", "--port", str(free_port()), env={"AMIGATE_DATABASE_URL": url})
    assert result.returncode == 1
    assert "schema is at revision none (empty database)" in result.stderr
    assert "run `amigate db upgrade`" in result.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    env = {"AMIGATE_DATABASE_URL": "postgresql://meter:pw123@127.0.0.1:1/amigate"}
    result = run_amigate("db", "upgrade", env=env)
    assert result.returncode == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("amigate: error:")]
    assert lines and "is unavailable: connection failed" in lines[0]
    assert "Traceback" not in result.stderr and "pw123" not in result.stderr


def test_invalid_setting_fails_at_start(tmp_path: Path) -> None:
    result = run_amigate("run", cwd=tmp_path, env={"AMIGATE_INTERVAL_MINUTES": "7"})
    assert result.returncode == 1
    assert "setting 'interval_minutes' = '7'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('database_url = "postgresql://meter:pw123@db/amigate"\napi_port = 8100\n')
    result = run_amigate("--config", str(cfg), "config", "show")
    assert result.returncode == 0
    assert '"database_url": "postgresql://meter:***@db/amigate"' in result.stdout
    assert '"api_port": 8100' in result.stdout


async def test_a_failed_periodic_run_is_logged_counted_and_tried_again(
    sqlite_store: Store, models: dict[str, MeterModel], caplog: pytest.LogCaptureFixture
) -> None:
    """A periodic job (validation, billing upkeep) that fails, by a storage error or by a
    bug, is logged, counted and run again at its next turn; the service goes on."""
    service = Service(load_settings(None), sqlite_store, fleet=None, models=models,
                      host="127.0.0.1", port=0, clock=TimeBase(3600.0))  # fmt: skip
    runs: list[int] = []
    failures: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise StorageUnavailable("the database is away")
        if len(runs) == 2:
            raise RuntimeError("a bug")
        service.stop()

    with caplog.at_level(logging.WARNING, logger="amigate.service"):
        await asyncio.wait_for(
            service._every("billing upkeep", 60, 900, job, lambda: failures.append(1)), 10
        )
    assert (len(runs), len(failures)) == (3, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert "billing upkeep failed: the database is away; trying again in 15 min" in messages
    assert "billing upkeep failed" in messages
