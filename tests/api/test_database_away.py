"""A database that goes away: 503 problems while it is gone, answers again once it is back
(reads run on the driver's cursor, outside SQLAlchemy's own disconnect handling)."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from amigate.api import create_app
from amigate.config import load_settings
from amigate.storage import make_engine
from tests.api.conftest import JAN1, Api, Q, add_meter, add_series, make_api, serve


def _determinant(api: Api, meter: int) -> httpx.Response:
    period = {"start": JAN1.isoformat(), "end": (JAN1 + 8 * Q).isoformat()}
    return api.get(f"/v1/meters/{meter}/determinants", "billing", params=period)


def test_connections_dropped_by_the_server_are_replaced(pg_engine: Engine) -> None:
    """PostgreSQL restarted or killed the API's sessions: the next requests are answered
    on new connections, none fails."""
    url = pg_engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=2, max_overflow=0)
    try:
        for api in make_api(engine):
            meter = add_meter(api.store, "000000000077")
            add_series(api.store, meter, JAN1, [Decimal(1)] * 8)
            before = _determinant(api, meter)
            assert before.status_code == 200, before.text
            with pg_engine.connect() as admin:
                killed = admin.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )).scalar()  # fmt: skip
            assert killed
            for _ in range(3):  # more requests than pooled connections
                after = _determinant(api, meter)
                assert after.status_code == 200, after.text
                assert after.json() == before.json()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unreachable_database_is_a_503_problem(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the PostgreSQL port; the SQLite file's folder was removed."""
    folder = tmp_path / "gone"
    folder.mkdir()
    url = (f"sqlite:///{folder / 'amigate.db'}" if backend == "sqlite"
           else "postgresql+psycopg://postgres@127.0.0.1:1/amigate")  # fmt: skip
    engine = make_engine(url, check=False)
    folder.rmdir()
    app = create_app(load_settings(), engine)
    try:
        for base in serve(app):
            with caplog.at_level(logging.WARNING), httpx.Client(base_url=base) as client:
                response = client.get("/v1/meters", headers={"X-API-Key": "amg_abc_def"})
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "urn:amigate:problem:unavailable"
            assert response.headers["Retry-After"] == "5"
            assert any("is unavailable" in r.getMessage() for r in caplog.records)
    finally:
        engine.dispose()
