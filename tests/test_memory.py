"""The allocator bounds used by ``amigate run`` on glibc."""

from __future__ import annotations

import gc
import platform
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from amigate.memory import bound_allocator, bound_sqlite, settle_heap, sqlite_memory, trim
from amigate.storage import make_engine, upgrade
from amigate.storage.vee_queries import load_window


def test_glibc_takes_the_arena_cap_and_trims() -> None:
    glibc = platform.libc_ver()[0] == "glibc"
    assert bound_allocator(2) is glibc
    blocks = [bytearray(1 << 16) for _ in range(2000)]  # 128 MiB, then freed
    del blocks
    assert trim() is glibc


def _fill_caches(path: Path, connections: int) -> int:
    """SQLite's memory after ``connections`` connections with 64 MiB caches each read a table."""
    opened = [sqlite3.connect(path) for _ in range(connections)]
    try:
        for db in opened:
            db.execute("PRAGMA cache_size=-65536")
            assert db.execute("SELECT sum(length(body)) FROM t").fetchone()[0] == 40_000 * 400
        used = sqlite_memory()
        assert used is not None
        return used
    finally:
        for db in opened:
            db.close()


def test_the_sqlite_heap_limit_bounds_all_connections_together(tmp_path: Path) -> None:
    path = tmp_path / "pages.db"
    with sqlite3.connect(path) as db:  # 16 MB of rows: 4 readers would cache 64 MB
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, body BLOB)")
        db.executemany("INSERT INTO t VALUES (?, randomblob(400))", ((k,) for k in range(40_000)))
    db.close()
    before = bound_sqlite(0)
    try:
        unbounded = _fill_caches(path, 4)
        assert bound_sqlite(8 << 20) == 0  # the limit in force before: none
        bounded = _fill_caches(path, 4)
    finally:
        assert bound_sqlite(before) == 8 << 20
    assert unbounded > 40 << 20  # every connection kept its own copy of the pages
    assert bounded < 10 << 20  # together they stayed near the limit


def test_a_negative_sqlite_heap_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        bound_sqlite(-1)


def test_a_window_read_gives_its_file_mapping_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mapped.db'}")
    try:
        upgrade(engine)
        start = datetime(2026, 5, 1, tzinfo=UTC)
        load_window(engine, None, start, start + timedelta(days=1))  # maps the file to read
        assert engine.pool.checkedin() == 1  # the one connection it used is back
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == 0
    finally:
        engine.dispose()


def _after_queries(engine: Engine, statements: int) -> int:
    """SQLite's memory once ``statements`` distinct queries ran and the connection is back."""
    with engine.connect() as conn:
        for n in range(statements):  # a query built per day: a new statement each time
            conn.exec_driver_sql(f"SELECT count(*), {n} FROM t WHERE body IS NOT NULL").scalar()
    used = sqlite_memory()
    assert used is not None
    return used


def test_a_lean_engine_keeps_few_statements_and_frees_its_cache(tmp_path: Path) -> None:
    path = tmp_path / "lean.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, body BLOB)")
        db.executemany("INSERT INTO t VALUES (?, randomblob(400))", ((k,) for k in range(20_000)))
    db.close()
    usual = make_engine(f"sqlite:///{path}", sqlite_cache_kib=65536)
    lean = make_engine(f"sqlite:///{path}", sqlite_cache_kib=65536, sqlite_lean=True)
    try:
        base = sqlite_memory()
        assert base is not None
        kept = _after_queries(usual, 100) - base  # the pages read and 100 statements
        usual.dispose()
        base = sqlite_memory()
        assert base is not None
        left = _after_queries(lean, 100) - base
        with lean.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -65536
    finally:
        usual.dispose()
        lean.dispose()
    assert kept > 8 << 20  # 8 MB of pages stayed cached in the pooled connection
    assert left < 1 << 20  # the lean one gave them back, and kept few statements


def test_settling_the_heap_freezes_what_lives_now() -> None:
    before = [0]  # a container: tracked by the collector
    assert any(o is before for o in gc.get_objects())
    try:
        frozen = settle_heap()
        assert frozen == gc.get_freeze_count() > 10_000  # modules, classes, functions
        after = [1]  # made later: tracked, collected as usual
        assert gc.is_tracked(after)
        assert not any(o is before for o in gc.get_objects())  # out of the collector's sight
        assert any(o is after for o in gc.get_objects())
    finally:
        gc.unfreeze()


_FAULTS_PER_RESPONSE = """
import resource, sys
from amigate.memory import keep_freed
took = keep_freed(int(sys.argv[1]) << 20)
pieces = [f"[{i % 199}.000000]" for i in range(40_000)]
def response(n):  # a large response's life: text joined from pieces, encoded, freed
    text = ",".join(pieces[n:] + pieces[:n])
    return len(text.encode())
for n in range(5):
    response(n)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in range(20):
    response(n)
print(took, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc allocator option")
def test_a_heap_reserve_serves_large_responses_from_pages_already_touched() -> None:
    """Without a reserve every large response faults in fresh pages (its texts are mapped
    and unmapped); with one, the freed pages of one response serve the next."""

    def faults(reserve_mb: int) -> tuple[str, float]:
        done = subprocess.run([sys.executable, "-c", _FAULTS_PER_RESPONSE, str(reserve_mb)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        took, per_response = done.stdout.split()
        return took, float(per_response)

    took, without = faults(0)
    assert took == "False" and without > 100  # a 320 kB list, two 440 kB texts: 240 pages
    took, reserved = faults(32)
    assert took == "True" and reserved < 5
