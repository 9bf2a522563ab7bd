"""Hot read statements run on the driver's own cursor.

SQLAlchemy's execution of a statement costs 65–145 µs of CPU besides the database's
work (an execution context, parameter and result processing, and on SQLite the
expansion of ``IN`` lists); the driver's cursor takes 10–25 µs. A billing determinant
runs five or six statements and an API key check one: on SQLite this overhead was
almost half of a determinant (2.6 ms, 1.4 without). The statements the API runs per
request go through :func:`fetch` instead of ``Connection.execute``:

* they are still written with ``text()`` and compiled by SQLAlchemy, once per dialect
  (its quoting, ``%`` escaping and parameter style);
* parameters must already be what the driver takes (times through
  ``ingest.time_encoder``); a list binds as an array on PostgreSQL and as a JSON array
  on SQLite, as :mod:`amigate.storage.id_lists` writes its ``IN`` tests;
* rows come back as the driver gives them (epoch seconds on SQLite, datetimes and
  ``Decimal`` on PostgreSQL), as they do for ``text()`` statements anyway.

The connection is the caller's (``engine.connected``), so driver errors are translated
as for any other query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Dialect, TextClause

_Compiled = tuple[str, tuple[str, ...] | None]
#: statement (held, so its id cannot be reused) and dialect -> (SQL, positional names)
_COMPILED: dict[tuple[TextClause, str], _Compiled] = {}
_MAX_COMPILED = 512  # statements built per schedule or holiday set are few, but not fixed


def fetch(
    conn: Connection, statement: TextClause, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """All rows of ``statement`` with ``params``, run on ``conn``'s driver cursor."""
    dialect = conn.dialect
    sql, names = driver_sql(dialect, statement)
    if dialect.name == "sqlite":
        params = {name: _sqlite(value) for name, value in params.items()}
    values = params if names is None else tuple(params[n] for n in names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, values)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def driver_sql(dialect: Dialect, statement: TextClause) -> _Compiled:
    """The SQL :func:`fetch` sends for ``statement`` on ``dialect``, and the names of its
    parameters in order when the driver takes them by position (compiled once)."""
    key = (statement, dialect.name)
    compiled = _COMPILED.get(key)
    if compiled is None:
        if len(_COMPILED) >= _MAX_COMPILED:
            _COMPILED.clear()
        done = statement.compile(dialect=dialect)
        names = tuple(done.positiontup) if done.positiontup is not None else None
        compiled = _COMPILED[key] = (done.string, names)
    return compiled


def _sqlite(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return json.dumps(value)
    return value
