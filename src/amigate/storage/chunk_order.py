"""TimescaleDB: rewrite each closed chunk of intervals in meter order, once.

Intervals arrive time-major: every meter's reading of one 15-minute slot is
stored together, so a chunk (a day) keeps a meter's 96 intervals on 96
different pages, and a meter-month series reads about 2,900 pages. Rewritten in
the order of the primary key (meter, channel, time), the same series reads a few
pages per day. SQLite needs none of this: its ``WITHOUT ROWID`` tables are kept
in key order.

The rewrite is PostgreSQL's ``CLUSTER`` (TimescaleDB's ``reorder_chunk`` and
reorder policies exist only under the Timescale license); it locks the chunk
while it runs (a few seconds for a day of 10,000 meters), so only chunks that
ended a while ago are rewritten, one per call by default, and only once: the
chunk's key index is then marked clustered. Intervals that arrive later for a
rewritten day are appended as usual.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import Engine, text

from amigate.errors import StorageError
from amigate.storage.engine import translate_errors

_LOG = logging.getLogger("amigate.storage")
_LOCK_NOT_AVAILABLE = "lock timeout"

_UNORDERED = text(
    "SELECT format('%I.%I', c.chunk_schema, c.chunk_name), quote_ident(x.relname) "
    "FROM timescaledb_information.chunks c JOIN pg_index i ON i.indisprimary "
    "AND i.indrelid = format('%I.%I', c.chunk_schema, c.chunk_name)::regclass "
    "JOIN pg_class x ON x.oid = i.indexrelid "
    "WHERE c.hypertable_name = 'intervals' AND c.range_end <= :before "
    "AND NOT i.indisclustered ORDER BY c.range_end DESC LIMIT :n"
)


def order_closed_chunks(
    engine: Engine, *, ended_before: datetime, limit: int = 1, lock_wait_s: float = 5.0
) -> int:
    """Rewrite up to ``limit`` chunks of intervals that ended before ``ended_before`` (newest
    first) in meter order; return how many. Nothing to do on SQLite or without
    TimescaleDB. A chunk that stays in use for ``lock_wait_s`` is left for a later call
    (queries queue behind a waiting rewrite, so it must not wait long).

    Raises:
        StorageError: the database refused (StorageUnavailable: it is away).
    """
    if engine.dialect.name != "postgresql":
        return 0
    with translate_errors(engine), engine.connect() as conn:
        present = conn.execute(
            text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        ).first()  # fmt: skip
        if present is None:
            return 0
        chunks = conn.execute(_UNORDERED, {"before": ended_before, "n": limit}).all()
    done = 0
    for chunk, index in chunks:
        started = time.perf_counter()
        try:
            with translate_errors(engine), engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_wait_s * 1000)}ms'"))
                conn.execute(text(f"CLUSTER {chunk} USING {index}"))  # names from the catalogue
        except StorageError as exc:
            if _LOCK_NOT_AVAILABLE not in str(exc):
                raise
            _LOG.info("intervals chunk %s is in use; rewriting it later", chunk)
            continue
        with translate_errors(engine), engine.connect() as conn:
            # The rewrite leaves no visibility map (index-only scans fetch the heap again)
            # and statistics that describe the old order: refresh both.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"VACUUM (ANALYZE) {chunk}"))
        done += 1
        _LOG.info("intervals chunk %s rewritten in meter order in %.1f s",
                  chunk, time.perf_counter() - started)  # fmt: skip
    return done
