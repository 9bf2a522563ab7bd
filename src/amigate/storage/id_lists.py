"""Lists of ids bound to one statement (``IN :ids``).

SQLAlchemy binds a list for ``IN`` as one placeholder per item ("expanding"). On
PostgreSQL that makes a batch of 1,000 meters a 12 kB statement, which psycopg parses
again on every run (it caches short statements only): about 20 ms a statement, and a
batch of determinants runs five of them. There the list is one array parameter
instead (``= ANY``): the statement stays short and the same for every batch. SQLite
has no arrays; it keeps the expanding ``IN``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Engine,
    SQLColumnExpression,
    TextClause,
    any_,
    bindparam,
    text,
)

#: The databases amigate stores in, for statements built once per dialect.
DIALECTS = ("sqlite", "postgresql")
_IN = " IN :ids"
_ANY = " = ANY(CAST(:ids AS bigint[]))"


def ids_text(engine: Engine, sql: str) -> TextClause:
    """``sql``, whose ``IN :ids`` tests against the list bound as ``ids``, for ``engine``."""
    return _ids_text(engine.dialect.name, sql)


@lru_cache(maxsize=128)
def _ids_text(dialect: str, sql: str) -> TextClause:
    if _IN not in sql:
        raise ValueError(f"no{_IN} in {sql!r}")
    if dialect == "postgresql":
        return text(sql.replace(_IN, _ANY))
    return text(sql).bindparams(bindparam("ids", expanding=True))


def ids_match(column: SQLColumnExpression[Any], dialect: str) -> ColumnElement[bool]:
    """``column`` among the list bound as ``ids``: the SQL expression form of :func:`ids_text`
    for a ``dialect`` (statements built once per dialect)."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    return column.in_(bindparam("ids", expanding=True))
