"""Lists of ids bound to one statement (``IN :ids``).

SQLAlchemy binds a list for ``IN`` as one placeholder per item ("expanding"). On
PostgreSQL that makes a batch of 1,000 meters a 12 kB statement, which psycopg parses
again on every run (it caches short statements only): about 20 ms a statement, and a
batch of determinants runs five of them. There the list is one array parameter
instead (``= ANY``): the statement stays short and the same for every batch. SQLite
has no arrays: the list is bound as the text of a JSON array and read by ``json_each``
(one parameter too; SQLAlchemy took 8 ms to expand 1,000 placeholders, and the
driver's own cursor, see :mod:`amigate.storage.driver_rows`, cannot expand them).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Dialect,
    Engine,
    SQLColumnExpression,
    String,
    TextClause,
    TypeDecorator,
    any_,
    bindparam,
    func,
    select,
    text,
)

_IN = " IN :ids"
_ANY = " = ANY(CAST(:ids AS bigint[]))"
_JSON_EACH = " IN (SELECT value FROM json_each(:ids))"


class JsonIds(TypeDecorator[list[int]]):
    """A list of ids bound as the text of a JSON array (SQLite's form of the list)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: list[int] | None, dialect: Dialect) -> str | None:
        """The JSON text of the list."""
        return None if value is None else json.dumps(list(value))


def ids_text(engine: Engine, sql: str) -> TextClause:
    """``sql``, whose ``IN :ids`` tests against the list bound as ``ids``, for ``engine``."""
    return _ids_text(engine.dialect.name, sql)


@lru_cache(maxsize=128)
def _ids_text(dialect: str, sql: str) -> TextClause:
    if _IN not in sql:
        raise ValueError(f"no{_IN} in {sql!r}")
    if dialect == "postgresql":
        return text(sql.replace(_IN, _ANY))
    return text(sql.replace(_IN, _JSON_EACH)).bindparams(bindparam("ids", type_=JsonIds()))


def ids_match(column: SQLColumnExpression[Any], dialect: str) -> ColumnElement[bool]:
    """``column`` among the list bound as ``ids``: the SQL expression form of :func:`ids_text`
    for a ``dialect``."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    each = func.json_each(bindparam("ids", type_=JsonIds())).table_valued("value")
    return column.in_(select(each.c.value))
