"""Lists of ids in one statement: the same rows on both backends, one array on PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from amigate.domain import Meter, Protocol
from amigate.storage import Store
from amigate.storage.anomaly_queries import open_anomalies
from amigate.storage.api_queries import existing_meters, first_reads_in
from amigate.storage.driver_rows import driver_sql
from amigate.storage.id_lists import ids_match, ids_text
from amigate.storage.models import MeterRow
from tests.api.conftest import JAN1, add_series


def test_a_thousand_ids_select_their_rows(engine: Engine) -> None:
    store = Store(engine)
    ids = []
    for i in range(3):
        meter = store.add_meter(Meter(address=f"{i:012d}", protocol=Protocol.DLT645_2007,
                                      bus="b1", model="dlt645-2007-single-phase"))  # fmt: skip
        assert meter.id is not None
        ids.append(meter.id)
        add_series(store, meter.id, JAN1, [])
    asked = [*range(10_000, 10_997), *ids]
    assert sorted(existing_meters(engine, asked)) == ids
    cid = store.channel_id("1.8.0")
    reads = first_reads_in(engine, asked, cid, JAN1, JAN1 + timedelta(minutes=1))
    assert sorted(reads) == ids
    assert open_anomalies(engine, asked, JAN1, JAN1 + timedelta(days=1)) == {}


def test_the_list_is_one_parameter(engine: Engine) -> None:
    """The statement is short and the same for any list: an array on PostgreSQL, a JSON
    array read by json_each on SQLite (never one placeholder per id)."""
    query = ids_text(engine, "SELECT id FROM meters WHERE id IN :ids")
    sql, names = driver_sql(engine.dialect, query)
    if engine.dialect.name == "postgresql":
        assert re.search(r"id = ANY\(CAST\(%\(ids\)s AS bigint\[\]\)\)", sql), sql
    else:
        assert "id IN (SELECT value FROM json_each(?))" in sql and names == ("ids",), sql
    meter = Store(engine).add_meter(Meter(address="000000000001", protocol=Protocol.DLT645_2007,
                                          bus="b1", model="dlt645-2007-single-phase"))  # fmt: skip
    asked = {"ids": [meter.id, 10_000, 10_001]}
    each = select(MeterRow.id).where(ids_match(MeterRow.id, engine.dialect.name))
    with engine.connect() as conn:  # both forms, run by SQLAlchemy too
        assert conn.execute(query, asked).all() == [(meter.id,)]
        assert conn.execute(each, asked).all() == [(meter.id,)]


def test_a_statement_without_the_list_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="IN :ids"):
        ids_text(engine, "SELECT 1 WHERE 1 IN (:ids)")
