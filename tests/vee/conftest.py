"""Fixtures for validation tests: stores on both backends with the validation tables emptied."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from amigate.storage import Store


@pytest.fixture
def vee_store(engine: Engine) -> Store:
    """A Store on each backend, with the validation tables emptied too."""
    with engine.begin() as conn:
        for table in ("meter_profiles", "vee_runs"):
            conn.execute(text(f"DELETE FROM {table}"))
    return Store(engine)
