"""Closed TimescaleDB chunks of intervals are rewritten in meter order, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from amigate.domain import Meter, Protocol
from amigate.storage import Store
from amigate.storage.chunk_order import order_closed_chunks
from amigate.storage.ingest import INTERVALS, ingest_rows, time_encoder

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)


def _load_time_major(engine: Engine) -> None:
    """Three meters, two days of 15-minute intervals, stored slot by slot as collected."""
    store = Store(engine)
    store.register_meters([Meter(address=f"{m:012d}", protocol=Protocol.DLT645_2007,
                                 model="m", bus="b") for m in range(1, 4)])  # fmt: skip
    ids = sorted(m.id for m in store.meters() if m.id is not None)
    cid = store.channel_id("1.8.0")
    when = time_encoder(engine)
    rows = [(m, cid, when(DAY1 + slot * timedelta(minutes=15)), 900, 10_000, 0, 0)
            for slot in range(192) for m in ids]  # fmt: skip
    ingest_rows(engine, INTERVALS, rows)


def _chunks(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'intervals' ORDER BY range_start"
        ))]  # fmt: skip


def _stored_order(engine: Engine, chunk: str) -> list[int]:
    """Meter ids of a chunk's rows in the order they lie on disk."""
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(f"SELECT meter_id FROM {chunk} ORDER BY ctid"))]


def test_closed_chunks_are_rewritten_in_meter_order_once(engine: Engine) -> None:
    _load_time_major(engine)
    later = DAY1 + timedelta(days=10)
    if engine.dialect.name == "sqlite":  # kept in key order already
        assert order_closed_chunks(engine, ended_before=later) == 0
        return
    first, second = _chunks(engine)
    before = _stored_order(engine, first)
    assert before[:6] == [before[0], before[1], before[2]] * 2  # slot by slot
    assert order_closed_chunks(engine, ended_before=DAY1 + timedelta(days=1)) == 1  # the first
    assert _stored_order(engine, first) == sorted(before)  # meter by meter
    assert _stored_order(engine, second)[:2] != sorted(_stored_order(engine, second))[:2]
    assert order_closed_chunks(engine, ended_before=later, limit=5) == 1  # the second
    assert _stored_order(engine, second) == sorted(_stored_order(engine, second))
    assert order_closed_chunks(engine, ended_before=later, limit=5) == 0  # each only once
    with engine.connect() as conn:  # nothing lost
        assert conn.execute(text("SELECT count(*) FROM intervals")).scalar() == 3 * 192


def test_a_chunk_in_use_is_left_for_later(engine: Engine) -> None:
    _load_time_major(engine)
    later = DAY1 + timedelta(days=10)
    if engine.dialect.name == "sqlite":
        assert order_closed_chunks(engine, ended_before=later, lock_wait_s=0.2) == 0
        return
    first, _second = _chunks(engine)
    before = _stored_order(engine, first)
    with engine.connect() as reader:  # a long read of the first day
        reader.execute(text(f"LOCK TABLE {first} IN ACCESS SHARE MODE"))
        done = order_closed_chunks(engine, ended_before=DAY1 + timedelta(days=1), lock_wait_s=0.2)
        assert done == 0 and _stored_order(engine, first) == before
    assert order_closed_chunks(engine, ended_before=DAY1 + timedelta(days=1)) == 1
