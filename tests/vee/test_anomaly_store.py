"""Anomaly storage: replays are no-ops, persisting conditions extend one record, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from amigate.domain import Anomaly, AnomalyStatus, Severity
from amigate.errors import AnomalyStateError, StorageError
from amigate.storage import Store
from amigate.storage.anomaly_store import acknowledge, list_anomalies, resolve

T0 = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)


def _a(start: datetime, end: datetime | None, *, kind: str = "spike", meter: int = 1,
       channel: str = "1.8.0", severity: Severity = Severity.WARNING) -> Anomaly:  # fmt: skip
    return Anomaly(kind=kind, start=start, end=end, severity=severity, meter_id=meter,
                   evidence={"channel": channel, "value": str(start.hour)})  # fmt: skip


def test_same_anomaly_twice_is_stored_once(vee_store: Store) -> None:
    first = vee_store.add_anomalies([_a(T0, T0 + H)])
    again = vee_store.add_anomalies([_a(T0, T0 + H)])
    assert first == again
    stored = list_anomalies(vee_store.engine)
    assert len(stored) == 1
    assert stored[0].occurrences == 1
    assert stored[0].subject == "1.8.0"


def test_persisting_condition_extends_its_open_record(vee_store: Store) -> None:
    ids = vee_store.add_anomalies([_a(T0, T0 + H), _a(T0 + 2 * H, T0 + 3 * H)])
    ids += vee_store.add_anomalies([_a(T0 + 5 * H, T0 + 6 * H, severity=Severity.CRITICAL)])
    assert len(set(ids)) == 1
    (stored,) = list_anomalies(vee_store.engine)
    assert (stored.start, stored.end) == (T0, T0 + 6 * H)
    assert stored.occurrences == 3
    assert stored.severity is Severity.CRITICAL
    assert stored.evidence["value"] == str((T0 + 5 * H).hour)


def test_other_subject_kind_or_meter_is_another_record(vee_store: Store) -> None:
    ids = vee_store.add_anomalies([
        _a(T0, T0 + H), _a(T0, T0 + H, channel="2.8.0"), _a(T0, T0 + H, kind="stopped"),
        _a(T0, T0 + H, meter=2),
    ])  # fmt: skip
    assert len(set(ids)) == 4


def test_condition_after_the_join_gap_is_a_new_record(vee_store: Store) -> None:
    first = vee_store.add_anomalies([_a(T0, T0 + H)])
    later = vee_store.add_anomalies([_a(T0 + H + timedelta(days=1, seconds=1), T0 + 30 * H)])
    assert first != later
    edge = vee_store.add_anomalies([_a(T0 + 30 * H + timedelta(days=1), T0 + 60 * H)])
    assert edge == later


def test_ongoing_episode_absorbs_later_reports(vee_store: Store) -> None:
    first = vee_store.add_anomalies([_a(T0, None)])
    later = vee_store.add_anomalies([_a(T0 + timedelta(days=5), T0 + timedelta(days=5, hours=1))])
    assert first == later
    (stored,) = list_anomalies(vee_store.engine)
    assert stored.end is None


def test_lifecycle_open_acknowledged_resolved(vee_store: Store) -> None:
    (ident,) = vee_store.add_anomalies([_a(T0, T0 + H)])
    acknowledge(vee_store.engine, ident, by="alice", comment="looking")
    (stored,) = list_anomalies(vee_store.engine, status=AnomalyStatus.ACKNOWLEDGED)
    assert stored.acknowledged_by == "alice"
    assert stored.acknowledged_at is not None
    # an acknowledged record is still extended by the persisting condition
    assert vee_store.add_anomalies([_a(T0 + 2 * H, T0 + 3 * H)]) == [ident]
    resolve(vee_store.engine, ident, by="bob")
    (stored,) = list_anomalies(vee_store.engine)
    assert stored.status is AnomalyStatus.RESOLVED
    assert (stored.resolved_by, stored.comment) == ("bob", "looking")
    with pytest.raises(AnomalyStateError, match="resolved"):
        acknowledge(vee_store.engine, ident, by="alice")
    with pytest.raises(AnomalyStateError):
        resolve(vee_store.engine, ident, by="alice")
    with pytest.raises(StorageError, match="no anomaly 999"):
        resolve(vee_store.engine, 999, by="alice")


def test_resolved_record_absorbs_replays_but_not_recurrence(vee_store: Store) -> None:
    (ident,) = vee_store.add_anomalies([_a(T0, T0 + 3 * H)])
    resolve(vee_store.engine, ident, by="bob")
    assert vee_store.add_anomalies([_a(T0 + H, T0 + 2 * H)]) == [ident]
    (recurred,) = vee_store.add_anomalies([_a(T0 + 4 * H, T0 + 5 * H)])
    assert recurred != ident
    assert len(list_anomalies(vee_store.engine, status=AnomalyStatus.OPEN)) == 1


def test_area_anomalies_dedup_by_area(vee_store: Store) -> None:
    loss = Anomaly(kind="line_loss_high", start=T0, end=T0 + 24 * H, severity=Severity.WARNING,
                   transformer_area="A1", evidence={"rate": "0.2"})  # fmt: skip
    assert vee_store.add_anomalies([loss]) == vee_store.add_anomalies([loss])
    assert list_anomalies(vee_store.engine, transformer_area="A1")[0].meter_id is None


def test_concurrent_reports_of_one_condition_make_one_record(vee_store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    reports = [_a(T0 + k * H, T0 + (k + 1) * H) for k in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda a: vee_store.add_anomalies([a])[0], reports))
    assert len(set(ids)) == 1
    (stored,) = list_anomalies(vee_store.engine)
    assert (stored.start, stored.end) == (T0, T0 + 6 * H)
    assert 1 <= stored.occurrences <= 6  # a report inside the record's range is a replay
