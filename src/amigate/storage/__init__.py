"""Storage: SQLAlchemy models, engines for SQLite and TimescaleDB, bulk idempotent ingest."""

from __future__ import annotations

from amigate.storage.engine import make_engine, timescaledb_license
from amigate.storage.migrate import current_revision, head_revision, require_current, upgrade
from amigate.storage.store import Store, VersionSelector

__all__ = [
    "Store",
    "VersionSelector",
    "current_revision",
    "head_revision",
    "make_engine",
    "require_current",
    "timescaledb_license",
    "upgrade",
]
