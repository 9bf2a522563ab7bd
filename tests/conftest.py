"""Shared fixtures: databases on both backends.

The PostgreSQL backend is a real TimescaleDB server (``scripts/timescaledb.sh start``
provides one on 127.0.0.1:5433; ``AMIGATE_TEST_PG_URL`` points elsewhere). Tests
that use it fail, never skip, when it is not running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from amigate.meter_models import MeterModel, load_models
from amigate.storage import Store, make_engine, upgrade

PG_URL = os.environ.get(
    "AMIGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5433/amigate_test"
)
BACKENDS = ["sqlite", "timescaledb"]


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    """A freshly created, migrated TimescaleDB database for the whole run."""
    url = make_url(PG_URL)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception as exc:
        pytest.fail(
            f"TimescaleDB is not reachable at {url.render_as_string()}: {exc}\n"
            "start it with: scripts/timescaledb.sh start",
            pytrace=False,
        )
    finally:
        admin.dispose()
    engine = make_engine(PG_URL)
    upgrade(engine)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    tables = ["intervals", "interval_versions", "register_reads", "samples", "clock_checks",
              "change_log",
              "day_totals", "day_series",
              "anomalies", "api_keys", "ingest_batches", "changes",
              "meters", "channels"]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))


@pytest.fixture
def clean_pg(pg_engine: Engine) -> Engine:
    """The TimescaleDB test database, emptied."""
    _truncate(pg_engine)
    return pg_engine


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "amigate.db"
        eng = make_engine(f"sqlite:///{path}")
        upgrade(eng)
        request.addfinalizer(eng.dispose)
        return eng
    eng = request.getfixturevalue("pg_engine")
    _truncate(eng)
    return eng


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A Store over a freshly migrated SQLite file (for tests of the layers above storage)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(eng)
    yield Store(eng)
    eng.dispose()


@pytest.fixture(scope="session")
def models() -> dict[str, MeterModel]:
    """The shipped meter models."""
    return load_models()


@pytest.fixture
def store(engine: Engine) -> Store:
    """A Store over an empty database on each backend."""
    return Store(engine)
