"""Alembic owns the schema: models and migrations agree on both backends; errors are clear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect

from amigate.domain import Interval, Meter, Protocol
from amigate.errors import ConfigError, SchemaOutOfDate, StorageError, StorageUnavailable
from amigate.storage import (
    Store,
    current_revision,
    head_revision,
    make_engine,
    require_current,
    upgrade,
)
from amigate.storage.migrate import alembic_config, check


def test_models_and_migrations_agree(engine: Engine) -> None:
    assert current_revision(engine) == head_revision(engine)
    check(engine)  # raises StorageError listing the differences if they drift


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)


def test_check_reports_drift(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE meters ADD COLUMN surprise INTEGER")
    with pytest.raises(StorageError, match="schema and models disagree"):
        check(engine)


def test_empty_database_is_refused_until_upgraded(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="run `amigate db upgrade`"):
        require_current(engine)
    upgrade(engine)
    require_current(engine)


def test_unreachable_postgresql_is_a_clear_error() -> None:
    with pytest.raises(StorageUnavailable) as info:
        make_engine("postgresql://amigate:topsecret@127.0.0.1:1/amigate")
    message = str(info.value)
    assert message.startswith("database postgresql+psycopg://amigate:***@127.0.0.1:1/amigate")
    assert "is unavailable" in message
    assert "topsecret" not in message
    assert "\n" not in message


def test_missing_sqlite_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url at all", "oracle+cx://x"])
def test_wrong_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="database URL"):
        make_engine(url)


def test_the_day_series_migration_goes_down_and_up(engine: Engine) -> None:
    """0007 down: its table is gone, and on PostgreSQL the series trigger is 0005's again
    (a write runs it); up again: models and migrations agree."""
    try:
        command.downgrade(alembic_config(engine), "0006")
        assert current_revision(engine) == "0006"
        assert "day_series" not in inspect(engine).get_table_names()
        if engine.dialect.name == "sqlite":  # SQLite's writes drop day series in code
            return
        store = Store(engine)
        meter = store.add_meter(Meter(address="000000000007", protocol=Protocol.DLT645_2007,
                                      model="dlt645-2007-single-phase", bus="b1"))
        assert meter.id is not None
        at = datetime(2026, 1, 1, tzinfo=UTC)
        stored = store.ingest_intervals([Interval(meter_id=meter.id, channel="1.8.0", start=at,
                                                  end=at + timedelta(minutes=15),
                                                  value=Decimal("1.25"))])  # fmt: skip
        assert stored.inserted == 1
    finally:
        upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    check(engine)
