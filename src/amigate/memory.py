"""Keep the resident size of a long-running service flat on glibc (small gateways).

Python frees memory back to the C allocator, but glibc keeps freed pages of each
thread's arena for reuse, so a service whose database calls hop between worker
threads grows its resident size long after its live objects stopped growing. Two
glibc calls bound that: fewer arenas (``mallopt``) and handing free pages back
(``malloc_trim``). On other C libraries (musl, macOS) both do nothing.

SQLite's page caches are the other native memory that grows for hours: each
connection (the store's pool, every bus's spool) fills its cache as the database
grows, up to its ``cache_size``. :func:`bound_sqlite` sets SQLite's process-wide
soft heap limit: once all connections together hold that much, their caches
recycle their oldest pages instead of taking more memory.

Not memory but time: :func:`settle_heap` takes what a process builds at start-up
out of the garbage collector's full collections.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sqlite3
from typing import Any

__all__ = ["bound_allocator", "bound_sqlite", "sqlite_memory", "trim"]

#: mallopt parameter: the most malloc arenas glibc creates.
_M_ARENA_MAX = -8


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _libsqlite() -> Any:
    """The SQLite library the ``sqlite3`` module uses (its symbols), or None."""
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)
    except (OSError, AttributeError):
        return None
    if not hasattr(lib, "sqlite3_memory_used"):
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib


_LIBC = _libc()
_SQLITE = _libsqlite()


def bound_allocator(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; return whether the allocator took it."""
    return bool(_LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap pages back to the system; return whether any were released."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))


def bound_sqlite(limit: int) -> int:
    """Set SQLite's soft heap limit for the whole process, in bytes (0: no limit).

    The limit covers every SQLite connection of the process (the ``sqlite3``
    module and SQLAlchemy share one library): page caches stop growing once the
    total reaches it and reuse their least recently used pages instead. It is soft:
    a statement that needs more memory still gets it.

    Args:
        limit: the limit in bytes.

    Returns:
        The limit in force before, in bytes (to restore it).

    Raises:
        ValueError: a negative limit.
    """
    if limit < 0:
        raise ValueError(f"the SQLite heap limit must be >= 0 bytes, got {limit}")
    db = sqlite3.connect(":memory:")
    try:
        previous = int(db.execute("PRAGMA soft_heap_limit").fetchone()[0])
        db.execute(f"PRAGMA soft_heap_limit={int(limit)}")
        return previous
    finally:
        db.close()


def sqlite_memory() -> int | None:
    """Bytes SQLite holds now in this process (all connections), or None if unknown."""
    return None if _SQLITE is None else int(_SQLITE.sqlite3_memory_used())


def settle_heap() -> int:
    """Move every object alive now (modules, the app, its schemas: some 140k) out of the
    garbage collector's sight, once a process is set up, and return how many.

    A full collection visits every tracked object: 95 ms here for a started API
    process, paid by whichever request triggers it. Objects made at start-up live as
    long as the process, so visiting them finds nothing; frozen, a full collection
    visits only what came later.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
