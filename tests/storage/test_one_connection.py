"""One connection for a block of queries: ``one_connection`` and ``connected``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, event, text

from amigate.errors import StorageError
from amigate.storage.driver_rows import fetch
from amigate.storage.engine import connected, make_engine, one_connection, reader_engine
from tests.api.conftest import JAN1, Api, add_meter, add_series, make_api


@pytest.fixture
def checkouts(engine: Engine) -> Iterator[list[int]]:
    """Counts the connections checked out of the engine's pool (one entry each)."""
    seen: list[int] = []

    def count(*_args: object) -> None:
        seen.append(1)

    event.listen(engine, "checkout", count)
    yield seen
    event.remove(engine, "checkout", count)


def test_query_functions_share_the_block_connection(engine: Engine, checkouts: list[int]) -> None:
    with one_connection(engine) as outer:
        with connected(engine) as first, connected(engine) as second:
            assert first is outer and second is outer
        with one_connection(engine) as nested:
            assert nested is outer
    assert len(checkouts) == 1
    with connected(engine) as alone, connected(engine) as other:
        assert alone is not other  # outside a block each takes its own
    assert len(checkouts) == 3


def test_an_error_on_the_shared_connection_is_translated(engine: Engine) -> None:
    with (
        pytest.raises(StorageError, match="no_such_table"),
        one_connection(engine),
        connected(engine) as conn,
    ):
        conn.execute(text("SELECT * FROM no_such_table"))


def test_a_determinant_batch_checks_out_one_connection_for_its_queries(
    engine: Engine, checkouts: list[int]
) -> None:
    api: Api
    for api in make_api(engine):
        ids = [add_meter(api.store, f"{n:012d}") for n in range(1, 4)]
        for m in ids:
            add_series(api.store, m, JAN1, [Decimal("0.5")] * 8)
        period = {"start": JAN1.isoformat(), "end": (JAN1 + timedelta(hours=2)).isoformat()}
        assert api.post("/v1/determinants", json={"meter_ids": ids, **period}).status_code == 200
        checkouts.clear()  # the first request also looked the channel up
        r = api.post("/v1/determinants", json={"meter_ids": ids, **period})
        assert r.status_code == 200, r.text
        assert [d["consumption"] for d in r.json()["items"]] == ["4.000000"] * 3
        assert len(checkouts) == 2  # the key's lookup, then every query of the batch


def test_the_api_reads_through_a_pool_of_its_own(engine: Engine) -> None:
    readers = reader_engine(engine, connections=3, sqlite_cache_kib=1024)
    try:
        assert readers is not engine
        assert readers.pool.size() == 3  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO channels (code) VALUES ('9.9.9')"))
        with readers.connect() as conn:  # the same database
            assert conn.execute(text("SELECT id FROM channels WHERE code = '9.9.9'")).scalar()
    finally:
        readers.dispose()


def test_an_in_memory_database_has_no_second_engine() -> None:
    memory = make_engine("sqlite://")
    assert reader_engine(memory, connections=3, sqlite_cache_kib=1024) is memory


def test_a_block_reads_one_snapshot_on_sqlite_and_the_latest_commits_on_postgresql(
    engine: Engine,
) -> None:
    """SQLite: a write committed between two queries of a block is not seen by the second
    (both read one snapshot). PostgreSQL: the block reads in autocommit (no transaction
    open between its queries), each query seeing the latest commits."""
    count = text("SELECT count(*) FROM channels")
    with one_connection(engine) as conn:
        before = fetch(conn, count, {})[0][0]
        with engine.begin() as writer:
            writer.execute(text("INSERT INTO channels (code) VALUES ('7.7.7')"))
        after = fetch(conn, count, {})[0][0]
        if engine.dialect.name == "sqlite":
            assert after == before
        else:
            assert after == before + 1
            status = conn.connection.dbapi_connection.info.transaction_status  # type: ignore[union-attr]
            assert status == TransactionStatus.IDLE
    with one_connection(engine) as conn:  # a new block sees it
        assert fetch(conn, count, {})[0][0] == before + 1
