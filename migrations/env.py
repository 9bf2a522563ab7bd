"""Alembic environment: the engine comes from amigate (``amigate db ...``) or from its settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from amigate.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is None:
        from amigate.config import load_settings
        from amigate.storage.engine import make_engine

        engine = make_engine(load_settings().database_url.get_secret_value())
    assert isinstance(engine, Engine)
    return engine


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported: run against a database")

with _engine().connect() as conn:
    _run(conn)
    conn.commit()
