"""The register reads a determinant starts and ends at, for a batch of meters in one query."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine

from amigate.domain import Meter, Protocol, RegisterRead, Source
from amigate.storage import Store
from amigate.storage.api_queries import first_reads_in, reads_at_or_before
from tests.api.conftest import JAN1

MINUTE = timedelta(minutes=1)


def _meters(store: Store, count: int) -> list[int]:
    ids = []
    for i in range(count):
        meter = store.add_meter(Meter(address=f"{i + 1:012d}", protocol=Protocol.DLT645_2007,
                                      bus="b1", model="dlt645-2007-single-phase"))  # fmt: skip
        assert meter.id is not None
        ids.append(meter.id)
    return ids


def test_each_meter_gets_the_whole_row_of_its_first_and_its_latest_read(engine: Engine) -> None:
    """Per meter, every column comes from one read: the earliest in ``[low, high)`` and the
    latest in ``[since, at]``; reads outside the windows and meters without reads in them
    are left out."""
    store = Store(engine)
    one, two, idle = _meters(store, 3)
    reads = []
    for meter, base in ((one, 100), (two, 200)):
        for minute in (-1, 2, 5, 9, 12):  # one before each window, one after
            at = JAN1 + minute * MINUTE
            reads.append(RegisterRead(
                meter_id=meter, channel="1.8.0", read_at=at, value=Decimal(base + minute),
                collected_at=at + timedelta(seconds=base), source=Source.BACKFILL,
                clock_offset_s=minute,
            ))  # fmt: skip
    store.ingest_register_reads(reads)
    cid = store.channel_id("1.8.0")
    assert cid is not None
    first = first_reads_in(engine, [idle, two, one], cid, JAN1, JAN1 + 10 * MINUTE)
    latest = reads_at_or_before(engine, [one, idle, two], cid, JAN1 + 9 * MINUTE, JAN1)
    for found, minute in ((first, 2), (latest, 9)):
        assert sorted(found) == [one, two]
        for meter, base in ((one, 100), (two, 200)):
            row = found[meter]
            assert row.read_at == JAN1 + minute * MINUTE
            assert row.value == (base + minute) * 1_000_000  # micro-units
            assert row.collected_at == row.read_at + timedelta(seconds=base)
            assert row.source == int(Source.BACKFILL) and row.clock_offset_ms == minute * 1000
    assert first_reads_in(engine, [one], cid, JAN1 + 13 * MINUTE, JAN1 + 20 * MINUTE) == {}
    assert reads_at_or_before(engine, [one], cid, JAN1 - 2 * MINUTE, JAN1 - MINUTE) == {}
