"""Statements run on the driver's cursor: the rows SQLAlchemy would return, errors translated."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, text

from amigate.domain import Meter, Protocol
from amigate.errors import StorageError
from amigate.storage import Store
from amigate.storage.driver_rows import driver_sql, fetch
from amigate.storage.engine import connected
from amigate.storage.id_lists import ids_text


def _meters(engine: Engine, n: int) -> list[int]:
    store = Store(engine)
    ids = []
    for i in range(n):
        meter = store.add_meter(Meter(
            address=f"{i:012d}", protocol=Protocol.DLT645_2007, bus=f"b{i % 2}",
            model="dlt645-2007-single-phase",
        ))  # fmt: skip
        assert meter.id is not None
        ids.append(meter.id)
    return ids


def test_rows_are_those_sqlalchemy_returns(engine: Engine) -> None:
    """A repeated parameter, a list, a literal with % (escaped on PostgreSQL) and NULL."""
    ids = _meters(engine, 4)
    query = ids_text(engine,
        "SELECT id, bus, bus LIKE '%1', :nothing FROM meters WHERE id IN :ids "
        "AND (bus = :bus OR id = :first) AND id >= :first ORDER BY id"
    )  # fmt: skip
    params = {"ids": [ids[0], ids[1], ids[3], 99_999], "bus": "b1", "first": ids[0],
              "nothing": None}  # fmt: skip
    with connected(engine) as conn:
        driver = fetch(conn, query, params)
        orm = [tuple(r) for r in conn.execute(query, params).all()]
    assert driver == orm
    assert [r[0] for r in driver] == [ids[0], ids[1], ids[3]]
    assert [bool(r[2]) for r in driver] == [False, True, True]


def test_sqlalchemy_does_not_execute_the_statement(engine: Engine) -> None:
    """What the saving is: no SQLAlchemy execution (its events never see the statement)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    query = text("SELECT count(*) FROM meters WHERE bus = :bus")
    event.listen(engine, "before_cursor_execute", record)
    try:
        with connected(engine) as conn:
            assert fetch(conn, query, {"bus": "b1"}) == [(0,)]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in seen if "FROM meters" in s]
    assert driver_sql(engine.dialect, query) is driver_sql(engine.dialect, query)  # compiled once


def test_driver_errors_are_storage_errors(engine: Engine) -> None:
    """Translated as SQLAlchemy's are (SQLite reports a missing table as "operational")."""
    with pytest.raises(StorageError, match="no_such_table"), connected(engine) as conn:
        fetch(conn, text("SELECT x FROM no_such_table WHERE x = :x"), {"x": 1})
