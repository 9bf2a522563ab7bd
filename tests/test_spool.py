"""The local spool: bounds, order, drop policy, survives reopening, drains into a sink."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.config import load_settings
from amigate.domain import (
    Anomaly,
    Interval,
    Quality,
    RegisterRead,
    Sample,
    Severity,
    Source,
)
from amigate.errors import ConfigError, ReadingRejected, StorageUnavailable
from amigate.spool import Row, Spool, drain

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)


def _read(meter: int, k: int) -> RegisterRead:
    return RegisterRead(meter_id=meter, channel="1.8.0", read_at=T0 + k * IV,
                        value=Decimal("100.25") + k, collected_at=T0 + k * IV)  # fmt: skip


def _interval(meter: int, k: int, *, missing: bool = False) -> Interval:
    return Interval(
        meter_id=meter, channel="1.8.0", start=T0 + k * IV, end=T0 + (k + 1) * IV,
        value=None if missing else Decimal("0.600001"),
        quality=Quality.MISSING if missing else Quality.ACTUAL,
    )  # fmt: skip


def _all_kinds() -> list[Row]:
    return [
        _read(1, 0),
        _interval(1, 0),
        _interval(1, 1, missing=True),
        Interval(
            meter_id=1, channel="1.8.0", start=T0, end=T0 + 2 * IV, value=Decimal(1),
            version=2, reason_codes=("span",), source=Source.POLL,
        ),
        Sample(meter_id=1, channel="32.7.0", at=T0, value=Decimal("230.1")),
        Anomaly(
            kind="register_decrease", start=T0, end=T0 + IV, severity=Severity.WARNING,
            meter_id=1, evidence={"previous": "5.00", "capacity": None},
        ),
    ]  # fmt: skip


def test_rows_round_trip_exactly_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s" / "bus.spool"
    spool = Spool(path, max_rows=100)
    rows = _all_kinds()
    spool.append(rows)
    spool.close()
    again = Spool(path, max_rows=100)
    assert len(again) == len(rows)
    assert [row for _, row in again.oldest(100)] == rows
    again.close()


def test_oldest_first_and_remove(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "b.spool", max_rows=100)
    spool.append([_read(1, 0), _read(1, 1)])
    spool.append([_read(1, 2)])
    first = spool.oldest(2)
    assert [r for _, r in first] == [_read(1, 0), _read(1, 1)]
    spool.remove(seq for seq, _ in first)
    assert len(spool) == 1
    assert [r for _, r in spool.oldest(10)] == [_read(1, 2)]


def test_full_spool_drops_backfillable_reads_first_then_oldest_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "b.spool", max_rows=6, name="feeder")
    # meter 1 has a load profile (backfill-able), meter 2 has no memory
    spool.append([_read(2, 0), _interval(2, 0), _read(1, 0), _interval(1, 0)], backfillable={1})
    with caplog.at_level(logging.ERROR):
        dropped = spool.append([_read(2, 1), _interval(2, 1), _read(1, 1)], backfillable={1})
    assert (dropped.backfillable, dropped.other) == (1, 0)
    assert "spool feeder is full" in caplog.text and "dropped the oldest 1 read(s)" in caplog.text
    assert "backfill fills" in caplog.text
    assert [r for _, r in spool.oldest(10)] == [
        _read(2, 0), _interval(2, 0), _interval(1, 0), _read(2, 1), _interval(2, 1), _read(1, 1)
    ]
    # three more: two backfill-able rows left, then the oldest of meter 2
    dropped = spool.append([_read(2, 2), _interval(2, 2), _read(2, 3)], backfillable={1})
    assert (dropped.backfillable, dropped.other) == (2, 1)
    assert len(spool) == 6
    assert [r for _, r in spool.oldest(10)] == [
        _interval(2, 0), _read(2, 1), _interval(2, 1), _read(2, 2), _interval(2, 2), _read(2, 3)
    ]


def test_a_batch_larger_than_the_spool_keeps_its_newest_rows(tmp_path: Path) -> None:
    spool = Spool(None, max_rows=3)
    dropped = spool.append([_read(2, k) for k in range(5)])
    assert dropped.total == 2 and len(spool) == 3
    assert [r for _, r in spool.oldest(10)] == [_read(2, k) for k in (2, 3, 4)]


class Sink:
    """Records what it stores; unavailable while ``down``; refuses samples if asked."""

    def __init__(self) -> None:
        self.down = False
        self.refuse_samples = False
        self.stored: list[object] = []

    def _take(self, rows: Sequence[object]) -> list[int]:
        if self.down:
            raise StorageUnavailable("database is unavailable: connection refused")
        self.stored.extend(rows)
        return []

    def ingest_register_reads(self, reads: Sequence[RegisterRead]) -> object:
        return self._take(reads)

    def ingest_intervals(self, intervals: Sequence[Interval]) -> object:
        return self._take(intervals)

    def ingest_samples(self, samples: Sequence[Sample]) -> object:
        if self.refuse_samples:
            raise ReadingRejected("value has more than 6 decimal places")
        return self._take(samples)

    def add_anomalies(self, anomalies: Sequence[Anomaly]) -> object:
        return self._take(anomalies)


def test_drain_keeps_rows_while_unavailable_and_stores_them_oldest_first(tmp_path: Path) -> None:
    spool, sink = Spool(tmp_path / "b.spool", max_rows=100), Sink()
    sink.down = True
    spool.append([_read(1, 0), _interval(1, 0)])
    with pytest.raises(StorageUnavailable):
        drain(spool, sink)
    assert len(spool) == 2
    spool.append([_read(1, 1), _interval(1, 1)])
    sink.down = False
    assert drain(spool, sink, batch=3) == 4
    assert len(spool) == 0
    # reads before intervals within a batch, batches oldest first
    assert sink.stored == [_read(1, 0), _read(1, 1), _interval(1, 0), _interval(1, 1)]


def test_rows_the_database_refuses_are_discarded_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool, sink = Spool(tmp_path / "b.spool", max_rows=100, name="feeder"), Sink()
    sink.refuse_samples = True
    spool.append(_all_kinds())
    with caplog.at_level(logging.ERROR):
        assert drain(spool, sink) == 5
    assert len(spool) == 0
    assert "spool feeder: the database refused 1 sample row(s)" in caplog.text


def test_spool_settings(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path}/x.db")
    assert settings.spool_path == tmp_path / "amigate-spool"
    assert settings.spool_max_rows == 1_000_000
    pg = load_settings(database_url="postgresql://u@h/db", spool_dir=tmp_path / "sp")
    assert pg.spool_path == tmp_path / "sp"
    assert load_settings(database_url="postgresql://u@h/db").spool_path == Path("amigate-spool")
    with pytest.raises(ConfigError, match="spool_max_rows"):
        load_settings(spool_max_rows=10)
