"""Bulk ingest on both backends: idempotency, versions, exactness, timezones, conflicts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from amigate.domain import Interval, Meter, Protocol, Quality, RegisterRead, Sample, Source
from amigate.errors import ReadingRejected, StorageError, StorageUnavailable
from amigate.storage import Store, make_engine
from amigate.storage import ingest as ingest_module

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _meter(store: Store, address: str = "000000000001") -> int:
    meter = store.add_meter(
        Meter(address=address, protocol=Protocol.DLT645_2007, model="m", bus="bus-1")
    )
    assert meter.id is not None
    return meter.id


def _intervals(
    meter_id: int, n: int, *, start: datetime = T0, value: str = "0.25"
) -> list[Interval]:
    return [
        Interval(meter_id=meter_id, channel="1.8.0", start=start + i * STEP,
                 end=start + (i + 1) * STEP, value=Decimal(value) + Decimal(i) / 100)
        for i in range(n)
    ]  # fmt: skip


def test_same_batch_twice_is_stored_once(store: Store) -> None:
    mid = _meter(store)
    batch = _intervals(mid, 200)
    first = store.ingest_intervals(batch)
    second = store.ingest_intervals(batch)
    assert (first.inserted, first.duplicates) == (200, 0)
    assert (second.inserted, second.duplicates, second.conflicts) == (0, 200, 0)
    assert store.count("intervals") == 200


def test_batch_overlapping_stored_rows_adds_only_new_ones(store: Store) -> None:
    mid = _meter(store)
    store.ingest_intervals(_intervals(mid, 100))
    result = store.ingest_intervals(_intervals(mid, 150))  # 100 replayed + 50 new
    assert (result.inserted, result.duplicates) == (50, 100)
    assert store.count("intervals") == 150


def test_duplicates_inside_one_batch_are_stored_once(store: Store) -> None:
    mid = _meter(store)
    batch = _intervals(mid, 10)
    result = store.ingest_intervals(batch + batch[:4])
    assert result.inserted == 10
    assert store.count("intervals") == 10


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transactions of 8 rows, so a few rows span many of them."""
    monkeypatch.setattr(ingest_module, "BATCH_ROWS", 8)
    monkeypatch.setattr(ingest_module, "SQLITE_BATCH_ROWS", 8)


@pytest.mark.usefixtures("small_batches")
def test_batches_larger_than_one_transaction(store: Store) -> None:
    mid = _meter(store)
    assert store.ingest_intervals(_intervals(mid, 50)).inserted == 50
    result = store.ingest_intervals(_intervals(mid, 61))
    assert (result.inserted, result.duplicates) == (11, 50)
    assert store.count("intervals") == 61
    values = [iv.value for iv in store.intervals(mid, "1.8.0", T0, T0 + 61 * STEP)]
    assert values == [Decimal("0.25") + Decimal(i) / 100 for i in range(61)]


def test_stored_rows_the_probe_misses_are_still_found(store: Store) -> None:
    # The probe looks at the first, middle and last row; rows 1 and 3 are stored,
    # so the fast path is tried, meets them, and falls back to staging.
    mid = _meter(store)
    batch = _intervals(mid, 5)
    store.ingest_intervals([batch[1], batch[3]])
    result = store.ingest_intervals(batch)
    assert (result.inserted, result.duplicates, result.conflicts) == (3, 2, 0)
    altered = [*batch[:3], _intervals(mid, 4, value="1")[3], batch[4]]
    assert store.ingest_intervals(altered).conflicts == 1
    assert store.count("intervals") == 5


@pytest.mark.usefixtures("small_batches")
def test_a_failing_transaction_keeps_the_ones_before_it(store: Store) -> None:
    mid = _meter(store)
    batch = _intervals(mid, 20)
    broken = Interval(meter_id=mid, channel="1.8.0", start=batch[12].start, end=batch[12].end,
                      value=Decimal(10) ** 14)  # beyond a 64-bit integer of micro-units
    with pytest.raises(ReadingRejected, match="out of the storable range"):
        store.ingest_intervals([*batch[:12], broken, *batch[13:]])
    assert store.count("intervals") == 8  # the first transaction (rows 0-7) committed
    assert store.ingest_intervals(batch).inserted == 12  # a retry completes the rest


def test_new_version_supersedes_and_original_stays_queryable(store: Store) -> None:
    mid = _meter(store)
    store.ingest_intervals(_intervals(mid, 4))
    edit = Interval(meter_id=mid, channel="1.8.0", start=T0 + STEP, end=T0 + 2 * STEP,
                    value=Decimal("9.99"), version=2, quality=Quality.SUBSTITUTED, method=52,
                    reason_codes=("79",), source=Source.MANUAL, created_by="op-7",
                    comment="meter exchange")  # fmt: skip
    assert store.ingest_intervals([edit]).inserted == 1
    window = (T0, T0 + 4 * STEP)
    latest = store.intervals(mid, "1.8.0", *window)
    original = store.intervals(mid, "1.8.0", *window, version="original")
    every = store.intervals(mid, "1.8.0", *window, version="all")
    assert [iv.version for iv in latest] == [1, 2, 1, 1]
    assert latest[1] == edit
    assert original[1].value == Decimal("0.26") and original[1].quality is Quality.ACTUAL
    assert len(every) == 5


def test_different_value_under_a_stored_key_is_refused_not_overwritten(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    mid = _meter(store)
    store.ingest_intervals(_intervals(mid, 3))
    changed = _intervals(mid, 3, value="7")  # same keys, same version, other values
    fresh = _intervals(mid, 2, start=T0 + 3 * STEP)
    result = store.ingest_intervals(changed + fresh)
    assert (result.inserted, result.conflicts, result.duplicates) == (2, 3, 0)
    assert [iv.value for iv in store.intervals(mid, "1.8.0", T0, T0 + 3 * STEP)] == [
        Decimal("0.25"), Decimal("0.26"), Decimal("0.27"),
    ]  # fmt: skip
    assert "3 row(s) not stored" in caplog.text
    again = store.ingest_intervals(changed + fresh)  # still refused, never hidden by a replay
    assert (again.inserted, again.conflicts, again.duplicates) == (0, 3, 2)


def test_sums_are_exact_to_the_last_digit(store: Store) -> None:
    mid = _meter(store)
    # 0.1 kWh and 0.0001 kWh steps: float sums of these drift, integers do not.
    values = [Decimal("0.1"), Decimal("0.2"), Decimal("0.0001"), Decimal("123456.789012")] * 250
    batch = [
        Interval(meter_id=mid, channel="1.8.0", start=T0 + i * STEP, end=T0 + (i + 1) * STEP,
                 value=v)
        for i, v in enumerate(values)
    ]  # fmt: skip
    store.ingest_intervals(batch)
    stored = store.intervals(mid, "1.8.0", T0, T0 + 1000 * STEP)
    assert sum(iv.value for iv in stored if iv.value is not None) == sum(values)
    assert sum(values) == Decimal("30864272.278")
    with store.engine.connect() as conn:
        total = conn.execute(text("SELECT sum(value) FROM intervals")).scalar_one()
    assert int(total) == 30_864_272_278_000  # micro-kWh, summed by the database


def test_value_finer_than_storage_resolution_is_refused(store: Store) -> None:
    mid = _meter(store)
    with pytest.raises(ReadingRejected, match="more than 6 decimal places"):
        store.ingest_intervals(_intervals(mid, 1, value="0.0000001"))
    assert store.count("intervals") == 0


def test_local_times_with_zones_are_stored_as_utc(store: Store) -> None:
    mid = _meter(store)
    shanghai = ZoneInfo("Asia/Shanghai")
    local_start = datetime(2026, 3, 1, 8, 0, tzinfo=shanghai)  # 00:00 UTC
    fixed = timezone(timedelta(hours=-5))
    store.ingest_intervals([
        Interval(meter_id=mid, channel="1.8.0", start=local_start, end=local_start + STEP,
                 value=Decimal(1)),
        Interval(meter_id=mid, channel="1.8.0", start=datetime(2026, 2, 28, 19, 15, tzinfo=fixed),
                 end=datetime(2026, 2, 28, 19, 30, tzinfo=fixed), value=Decimal(2)),
    ])  # fmt: skip
    got = store.intervals(mid, "1.8.0", T0, T0 + 2 * STEP)
    assert [iv.start for iv in got] == [T0, T0 + STEP]
    assert all(iv.start.utcoffset() == timedelta(0) for iv in got)
    # The same instant written in another zone is the same key: a replay, not a new row.
    assert store.ingest_intervals([
        Interval(meter_id=mid, channel="1.8.0", start=T0, end=T0 + STEP, value=Decimal(1)),
    ]).duplicates == 1  # fmt: skip


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ReadingRejected, match="no timezone"):
        Interval(meter_id=1, channel="1.8.0", start=datetime(2026, 1, 1),
                 end=datetime(2026, 1, 1, 0, 15), value=Decimal(1))  # fmt: skip


def test_missing_interval_has_no_value(store: Store) -> None:
    mid = _meter(store)
    gap = Interval(meter_id=mid, channel="1.8.0", start=T0, end=T0 + STEP, value=None,
                   quality=Quality.MISSING)  # fmt: skip
    store.ingest_intervals([gap])
    (stored,) = store.intervals(mid, "1.8.0", T0, T0 + STEP)
    assert stored.value is None and stored.quality is Quality.MISSING
    with pytest.raises(ReadingRejected):
        Interval(meter_id=mid, channel="1.8.0", start=T0, end=T0 + STEP, value=Decimal(0),
                 quality=Quality.MISSING)  # fmt: skip


def test_register_reads_and_samples_round_trip(store: Store) -> None:
    mid = _meter(store)
    reads = [
        RegisterRead(meter_id=mid, channel="1.8.0", read_at=T0 + i * STEP,
                     value=Decimal("12345.67") + i,
                     collected_at=T0 + i * STEP + timedelta(seconds=3),
                     clock_offset_s=-1.5)
        for i in range(5)
    ]  # fmt: skip
    samples = [Sample(meter_id=mid, channel="32.7.0", at=T0 + i * STEP, value=Decimal("229.8"))
               for i in range(5)]  # fmt: skip
    assert store.ingest_register_reads(reads).inserted == 5
    assert store.ingest_register_reads(reads).duplicates == 5
    assert store.ingest_samples(samples).inserted == 5
    assert store.register_reads(mid, "1.8.0", T0, T0 + 5 * STEP) == reads
    assert store.samples(mid, "32.7.0", T0, T0 + 5 * STEP) == samples


def test_failed_batch_is_rolled_back_whole(store: Store) -> None:
    mid = _meter(store)
    good = _intervals(mid, 5)
    huge = Interval(
        meter_id=mid,
        channel="1.8.0",
        start=T0 + 10 * STEP,
        end=T0 + 11 * STEP,
        value=Decimal(10) ** 14,
    )  # 1e20 micro-units: beyond a 64-bit integer
    with pytest.raises(ReadingRejected, match="out of the storable range"):
        store.ingest_intervals([*good, huge])
    assert store.count("intervals") == 0
    assert store.ingest_intervals(good).inserted == 5  # the caller can retry the good rows


def test_duplicate_meter_gets_a_clear_error(store: Store) -> None:
    _meter(store)
    with pytest.raises(StorageError, match="already on bus 'bus-1'"):
        _meter(store)


def test_hypertables_exist_on_timescaledb(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables"
        )).all()  # fmt: skip
        dims = dict(conn.execute(text(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
        )).all())  # fmt: skip
        indexes = conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'intervals'"
        )).scalars().all()  # fmt: skip
    assert {name for name, _ in rows} == set(dims)
    assert dims == {"intervals": "ts", "interval_versions": "ts", "register_reads": "read_at",
                    "samples": "at",
                    "clock_checks": "checked_at"}  # fmt: skip
    assert indexes == ["pk_intervals"]  # the key only: no default time index to slow ingest


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    from pathlib import Path

    from amigate.storage import make_engine

    engine = make_engine(f"sqlite:///{Path(str(tmp_path)) / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_database_failure_mid_ingest_is_clear_and_loses_nothing(engine: Engine) -> None:
    """A transaction the database refuses rolls back whole; a retry stores everything once."""
    store = Store(engine)
    mid = _meter(store)
    batch = _intervals(mid, 40)
    store.ingest_intervals(batch[:10])
    if engine.dialect.name == "sqlite":
        # Another writer holds the database; our engine gives up after 0.2 s.
        impatient = make_engine(engine.url.render_as_string(), connect_args={"timeout": 0.2})
        blocker = sqlite3.connect(str(engine.url.database))
        blocker.execute("BEGIN IMMEDIATE")
        release = blocker.rollback
    else:
        # Statements are cancelled after 20 ms: the server abandons the COPY midway.
        impatient = make_engine(
            engine.url.render_as_string(hide_password=False),
            connect_args={"options": "-c statement_timeout=20"},
        )
        release = impatient.dispose
    with pytest.raises(StorageUnavailable) as info:
        Store(impatient).ingest_intervals(_intervals(mid, 20_000))
    assert "is unavailable" in str(info.value)
    release()
    impatient.dispose()
    assert store.count("intervals") == 10  # nothing half-written
    result = store.ingest_intervals(batch)
    assert (result.inserted, result.duplicates) == (30, 10)
    assert store.count("intervals") == 40


def test_a_resent_batch_is_recognised_by_its_fingerprint(store: Store) -> None:
    engine = store.engine
    mid = _meter(store)
    batch = _intervals(mid, 30)
    store.ingest_intervals(batch)
    with engine.connect() as conn:
        fingerprints = conn.execute(text("SELECT table_name, rows FROM ingest_batches")).all()
    assert fingerprints == [("intervals", 30)]
    assert store.ingest_intervals(batch).duplicates == 30
    # Without its fingerprint (say, pruned), the replay is still found row by row.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ingest_batches"))
    assert store.ingest_intervals(batch).duplicates == 30
    # A batch that differs in one value is not taken for the stored one.
    altered = [*batch[:-1], _intervals(mid, 30, value="5")[-1]]
    result = store.ingest_intervals(altered)
    assert (result.conflicts, result.duplicates) == (1, 29)
    assert store.count("intervals") == 30
