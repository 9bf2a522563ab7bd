"""An API process readies each pooled database connection before it takes requests
(``amigate.api.v1.warm_up``), and a failed or pointless warm-up leaves it serving."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, event, text

from amigate.api import create_app
from amigate.api.v1.warm_up import warm, warm_period
from amigate.config import load_settings
from amigate.storage import Store, make_engine, upgrade
from amigate.storage.engine import open_readers
from tests.api.conftest import Q, add_meter, add_series
from tests.helpers import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: 2026-03-01 00:00 in Shanghai, less an hour: the series runs over the month's edge
MAR1 = datetime(2026, 2, 28, 16, tzinfo=UTC)


def _readers(engine: Engine, connections: int) -> Engine:
    """The API's own engine on ``engine``'s database, with ``connections`` pooled."""
    url = engine.url.render_as_string(hide_password=False)
    return open_readers(url, connections=connections, sqlite_cache_kib=1024)


@pytest.fixture
def readers(engine: Engine) -> Iterator[Engine]:
    """Three pooled API connections over a database with one meter read across 1 March."""
    store = Store(engine)
    add_series(store, add_meter(store), MAR1 - 4 * Q, [Decimal("0.5")] * 8)
    found = _readers(engine, 3)
    yield found
    found.dispose()


def test_each_pooled_connection_runs_the_billing_reads(readers: Engine) -> None:
    """All three connections are open in the pool afterwards, and each ran the
    determinant's and the series' statements: on PostgreSQL often enough that psycopg
    prepared them (from the sixth run), on SQLite as its statement trace shows."""
    seen: dict[int, list[str]] = defaultdict(list)

    def trace(dbapi: Any, _record: Any) -> None:
        if readers.dialect.name == "sqlite":
            dbapi.set_trace_callback(partial(seen[id(dbapi)].append))

    event.listen(readers, "connect", trace)
    app = create_app(load_settings(), readers, inline_reads=True)
    assert warm(app, 3) == 3
    assert readers.pool.checkedin() == 3  # type: ignore[attr-defined]
    with ExitStack() as held:  # all three at once: the pool's three connections
        conns = [held.enter_context(readers.connect()) for _ in range(3)]
        if readers.dialect.name == "postgresql":
            pids, prepared = set(), []
            for conn in conns:
                pids.add(conn.execute(text("SELECT pg_backend_pid()")).scalar())
                prepared.append(conn.execute(text(
                    "SELECT count(*) FILTER (WHERE statement LIKE '%register_reads%'), "
                    "count(*) FILTER (WHERE statement LIKE '%api_keys%') "
                    "FROM pg_prepared_statements"
                )).one())  # fmt: skip
            assert len(pids) == 3
            assert all(reads >= 1 and keys >= 1 for reads, keys in prepared), prepared
        else:
            assert len(seen) == 3
            for statements in seen.values():
                assert any("FROM register_reads" in s for s in statements)
                assert any("FROM api_keys" in s for s in statements)
                assert any("FROM intervals" in s for s in statements)


def test_the_warm_up_reads_the_last_month_before_the_latest_read(
    readers: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The latest read is at 01:00 on 1 March (Shanghai): February is read."""
    app = create_app(load_settings(site_timezone="Asia/Shanghai"), readers, inline_reads=True)
    with caplog.at_level(logging.INFO, logger="amigate.api"):
        assert warm(app, 2, rounds=1) == 2
    assert "2 database connections readied" in caplog.text
    assert "2026-02-01 to 2026-03-01" in caplog.text


@pytest.mark.parametrize(
    ("latest", "max_days", "expected"),
    [
        # a read at the boundary stands for the month before it
        (datetime(2026, 5, 1, 0, 5, tzinfo=SHANGHAI), 93, ((2026, 4, 1), (2026, 5, 1))),
        (datetime(2026, 4, 30, 23, 45, tzinfo=SHANGHAI), 93, ((2026, 3, 1), (2026, 4, 1))),
        # a UTC time that is already January in Shanghai
        (datetime(2025, 12, 31, 16, 30, tzinfo=UTC), 93, ((2025, 12, 1), (2026, 1, 1))),
        # cut to the longest range a request may ask for
        (datetime(2026, 4, 10, tzinfo=SHANGHAI), 10, ((2026, 3, 22), (2026, 4, 1))),
    ],
)
def test_warm_period(
    latest: datetime, max_days: int, expected: tuple[tuple[int, ...], tuple[int, ...]]
) -> None:
    start, end = warm_period(latest, SHANGHAI, max_days)
    assert (start, end) == tuple(datetime(*day, tzinfo=SHANGHAI) for day in expected)
    assert start.utcoffset() == timedelta(hours=8)


def test_nothing_to_read_is_no_error(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """No meter, then a meter without reads: nothing is readied, and the log says why."""
    readers = _readers(engine, 2)
    try:
        app = create_app(load_settings(), readers, inline_reads=True)
        with caplog.at_level(logging.INFO, logger="amigate.api"):
            assert warm(app, 2) == 0
            add_meter(Store(engine))
            assert warm(app, 2) == 0
        assert caplog.text.count("no meter has a register read yet") == 2
    finally:
        readers.dispose()


def test_a_database_that_is_away_skips_the_warm_up(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens on the port: one warning, and the process goes on to serve."""
    readers = open_readers(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                           connections=2, sqlite_cache_kib=1024)  # fmt: skip
    try:
        app = create_app(load_settings(), readers)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="amigate.api"):
            assert warm(app, 2) == 0
        assert time.monotonic() - started < 10
        assert "API warm-up skipped" in caplog.text and "is unavailable" in caplog.text
    finally:
        readers.dispose()


def test_a_failing_read_stops_every_connection_s_warm_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read that fails (its table is gone) ends the warm-up of all three connections,
    none left waiting for the others, with one warning naming the meter."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    store = Store(engine)
    add_series(store, add_meter(store), MAR1, [Decimal("0.5")] * 4)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE anomalies"))
    readers = _readers(engine, 3)
    try:
        app = create_app(load_settings(), readers, inline_reads=True)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="amigate.api"):
            assert warm(app, 3) == 0
        assert time.monotonic() - started < 5  # the barrier was broken, not waited out
        said = [r.getMessage() for r in caplog.records]
        stopped = [m for m in said if "API warm-up stopped" in m]
        assert len(stopped) == 1 and "meter 1" in stopped[0] and "anomalies" in stopped[0]
    finally:
        readers.dispose()
        engine.dispose()
