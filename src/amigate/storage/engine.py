"""Engines for the two backends, and the translation of driver errors into ``StorageError``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from amigate.errors import ConfigError, StorageError, StorageUnavailable

log = logging.getLogger(__name__)
#: Prepared statements each connection of a lean SQLite engine keeps (``sqlite3``: 128).
LEAN_STATEMENTS = 16


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` and ``postgres://`` URLs.

    Raises:
        ConfigError: the URL is not a SQLite or PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {mask(url)!r} is not a valid URL") from exc
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise ConfigError(
        f"database URL {mask(url)!r}: unsupported database {backend!r} "
        "(use sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB)"
    )


def mask(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(
    url: str,
    *,
    check: bool = True,
    sqlite_cache_kib: int = 65536,
    sqlite_lean: bool = False,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url`` and check that the database answers (unless ``check``
    is false: a service that must start while its database is away).

    ``sqlite_cache_kib`` is SQLite's page cache per connection: large for bulk loads
    (the default), small for a long-running service on a small gateway. With
    ``sqlite_lean`` (the service) each connection also keeps only
    :data:`LEAN_STATEMENTS` prepared statements (a query built per day or per batch
    size is a new statement, each up to hundreds of KB) and gives its page cache back
    when it returns to the pool: pooled connections then hold memory only while used.

    SQLite gets WAL mode, ``synchronous=NORMAL`` and a busy timeout; PostgreSQL a
    connect timeout, so an unreachable server fails in seconds, not minutes.

    Raises:
        ConfigError: the URL is malformed or names an unsupported database.
        StorageUnavailable: the database cannot be reached or opened.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageUnavailable(
                    f"cannot open SQLite database {database!r}: "
                    f"folder {str(parent)!r} does not exist"
                )
        args = {"timeout": 30} | ({"cached_statements": LEAN_STATEMENTS} if sqlite_lean else {})
        kwargs.setdefault("connect_args", args)
    else:
        kwargs.setdefault("connect_args", {"connect_timeout": 5})
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"database URL {mask(url)!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, cache_kib=sqlite_cache_kib))
        if sqlite_lean:
            event.listen(engine, "checkin", _sqlite_checkin)
    if check:
        check_connection(engine)
    return engine


def reader_engine(engine: Engine, *, connections: int, sqlite_cache_kib: int) -> Engine:
    """A second engine on ``engine``'s database, with a pool of ``connections`` of its own
    (the API's): readers neither wait behind collection for a connection nor lose their
    page cache to its lean checkins, and a burst of requests reuses its connections
    instead of opening new ones. An in-memory SQLite database has no second engine:
    ``engine`` itself is returned.
    """
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return engine
    return open_readers(engine.url.render_as_string(hide_password=False),
                        connections=connections, sqlite_cache_kib=sqlite_cache_kib)  # fmt: skip


def open_readers(
    url: str, *, connections: int, sqlite_cache_kib: int, sqlite_mmap_mib: int = 0
) -> Engine:
    """An engine for the API's reads of ``url`` (see :func:`reader_engine`), not checked:
    a service may start while its database is away.

    With ``sqlite_mmap_mib``, SQLite reads up to that much of the file through a memory
    map: pages come from the kernel's page cache without a copy into each connection's
    own cache, which a small cache cannot hold for a batch (a 1,000-meter determinant
    batch reads 120k rows of day totals: 20 % less CPU mapped). Mapped pages count in
    the process's RSS (RssFile) though the kernel can reclaim them, and a failing disk
    read then ends the process (SIGBUS) instead of failing one query: API processes map,
    the service serving the API itself does not.
    """
    engine = make_engine(url, check=False, sqlite_cache_kib=sqlite_cache_kib,
                         pool_size=connections, max_overflow=connections)  # fmt: skip
    if engine.dialect.name == "sqlite" and sqlite_mmap_mib > 0:
        event.listen(engine, "connect", partial(_sqlite_mmap, size=sqlite_mmap_mib << 20))
    return engine


def _sqlite_mmap(dbapi_connection: Any, _record: Any, *, size: int) -> None:
    dbapi_connection.execute(f"PRAGMA mmap_size={int(size)}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, cache_kib: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")  # bulk ingest touches many pages
    cursor.close()


def _sqlite_checkin(dbapi_connection: Any, _record: Any) -> None:
    """Free the page cache of a connection on its way back to the pool (``sqlite_lean``):
    pooled connections then hold memory only while used."""
    if dbapi_connection is not None:
        dbapi_connection.execute("PRAGMA shrink_memory")


def check_connection(engine: Engine) -> None:
    """Open one connection and run ``SELECT 1``.

    Raises:
        StorageUnavailable: the database cannot be reached.
    """
    with translate_errors(engine), engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@contextlib.contextmanager
def translate_errors(engine: Engine) -> Iterator[None]:
    """Turn SQLAlchemy and raw driver errors into ``StorageUnavailable`` or ``StorageError``.

    The bulk paths use the driver directly (COPY, executemany), so its own
    exception classes are translated as well as SQLAlchemy's wrappers.
    """
    dbapi = engine.dialect.loaded_dbapi
    try:
        yield
    except (OperationalError, dbapi.OperationalError) as exc:
        where = mask(engine.url.render_as_string(hide_password=False))
        raise StorageUnavailable(f"database {where} is unavailable: {_first_line(exc)}") from exc
    except (DBAPIError, dbapi.Error) as exc:
        where = mask(engine.url.render_as_string(hide_password=False))
        raise StorageError(f"database {where} refused the operation: {_first_line(exc)}") from exc


_SHARED: ContextVar[Connection | None] = ContextVar("amigate_shared_connection", default=None)


@contextlib.contextmanager
def one_connection(engine: Engine) -> Iterator[Connection]:
    """Run the read queries of a block on one connection of ``engine``.

    Query functions that open their connection with :func:`connected` use this one
    instead of checking one out each: a determinant runs seven queries, and each
    checkout costs a liveness ping on PostgreSQL. On SQLite the block reads one
    snapshot (a read transaction from its first query on): a write committed meanwhile
    is all in what it reads or all out. Nested blocks reuse the outer connection.
    """
    outer = _SHARED.get()
    if outer is not None and outer.engine is engine:
        yield outer
        return
    with translate_errors(engine), engine.connect() as conn:
        _reading(conn)
        if engine.dialect.name == "sqlite":
            conn.connection.dbapi_connection.execute("BEGIN")  # type: ignore[union-attr]
        token = _SHARED.set(conn)
        try:
            yield conn
        finally:
            _SHARED.reset(token)


@contextlib.contextmanager
def connected(engine: Engine) -> Iterator[Connection]:
    """A connection to ``engine`` for one read query function, errors translated: the one
    of an enclosing :func:`one_connection` block, else a connection of its own."""
    shared = _SHARED.get()
    if shared is not None and shared.engine is engine:
        with translate_errors(engine):
            yield shared
        return
    with translate_errors(engine), engine.connect() as conn:
        _reading(conn)
        yield conn


def _reading(conn: Connection) -> None:
    """PostgreSQL: read in autocommit, without the BEGIN and ROLLBACK round trips of a
    transaction (two of a determinant's nine; each statement sees the latest commits, as
    it would in a READ COMMITTED transaction). The pool restores the connection's mode
    when it is returned."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="AUTOCOMMIT")


def _first_line(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    message = str(orig if orig is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def timescaledb_license(engine: Engine) -> str | None:
    """The TimescaleDB license: ``"apache"``, ``"timescale"``, or None without TimescaleDB."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        value = conn.execute(text("SELECT current_setting('timescaledb.license', true)")).scalar()
    return str(value) if value else None
