"""Validation runs against a real database: stored flags, estimates as versions, idempotence."""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from amigate.config import VeeSettings
from amigate.domain import (
    Interval,
    Meter,
    MeterRole,
    Protocol,
    Quality,
    RegisterRead,
    Sample,
    Source,
)
from amigate.errors import ReadingRejected
from amigate.normalize import ChannelPolicy, normalize_reads
from amigate.storage import Store
from amigate.storage.anomaly_store import list_anomalies
from amigate.storage.models import VeeRunRow
from amigate.storage.vee_queries import (
    MeterProfile,
    load_window,
    meter_profiles,
    set_meter_profile,
)
from amigate.vee import validate, validate_since
from amigate.vee.versions import edit_interval, record_backfill

START = datetime(2026, 3, 1, 16, tzinfo=UTC)  # Monday 00:00 in Asia/Shanghai
STEP = timedelta(minutes=15)
CFG = VeeSettings(history_min_days=2)


def _meter(store: Store, n: int, **kw: object) -> Meter:
    return store.add_meter(Meter(address=f"{n:012d}", protocol=Protocol.DLT645_2007,
                                 model="dlt645-2007-single-phase", bus="b",
                                 **kw))  # type: ignore[arg-type]  # fmt: skip


def _store_reads(
    store: Store, meter: Meter, energies: list[float], failed: Container[int] | None = None
) -> None:
    """Register reads at each boundary (``failed`` boundaries not read), normalized and stored."""
    assert meter.id is not None
    value = Decimal(100)
    reads = []
    for k in range(len(energies) + 1):
        if k:
            value += Decimal(str(energies[k - 1]))
        if failed is not None and k in failed:
            continue
        at = START + k * STEP
        reads.append(RegisterRead(meter_id=meter.id, channel="1.8.0", read_at=at, value=value,
                                  collected_at=at))  # fmt: skip
    out = normalize_reads(reads, interval=STEP, policy=ChannelPolicy())
    store.ingest_register_reads(reads)
    store.ingest_intervals(out.intervals)


def test_validation_stores_flags_and_estimates_once(vee_store: Store) -> None:
    meter = _meter(vee_store, 1)
    # three days of 0.1 kWh; on day 3 four reads fail: five intervals missing (75 min),
    # bridged by a gap span holding the register delta across them
    day3 = 2 * 96
    _store_reads(vee_store, meter, [0.1] * (3 * 96), failed=range(day3 + 41, day3 + 45))
    since, until = START + timedelta(days=2), START + timedelta(days=3)
    report = validate(vee_store, since=since, until=until, settings=CFG)
    assert report.intervals == 96
    assert report.versions == 5
    assert report.anomalies == {"missing_interval": 1}
    assert meter.id is not None
    latest = vee_store.intervals(meter.id, "1.8.0", since, until)
    gap = [iv for iv in latest if iv.quality is Quality.SUBSTITUTED]
    assert len(gap) == 5
    span = [iv for iv in vee_store.intervals(meter.id, "1.8.0", since, until, version="all")
            if "gap-span" in iv.reason_codes]  # fmt: skip
    assert sum(iv.value for iv in gap if iv.value is not None) == span[0].value == Decimal("0.5")
    assert {iv.method for iv in gap} == {17}
    originals = vee_store.intervals(meter.id, "1.8.0", since, until, version="original")
    assert sum(1 for iv in originals if iv.quality is Quality.MISSING) == 5
    first = list_anomalies(vee_store.engine)
    again = validate(vee_store, since=since, until=until, settings=CFG)
    assert again.versions == 0
    assert list_anomalies(vee_store.engine) == first
    with vee_store.engine.connect() as conn:
        runs = conn.execute(select(VeeRunRow.parameters)).scalars().all()
    assert len(runs) == 2 and runs[0]["like_days"] == 4


def test_overlapping_intervals_spanning_a_run_are_flagged(vee_store: Store) -> None:
    """Intervals at 0, 5 and 30 minutes of 15 each span what a run of three does; the
    window read keeps their real starts, so the overlap is found."""
    meter = _meter(vee_store, 1)
    assert meter.id is not None
    since = START + timedelta(days=2)
    vee_store.ingest_intervals([
        Interval(meter_id=meter.id, channel="1.8.0", start=since + at, end=since + at + STEP,
                 value=Decimal("0.1"))
        for at in (timedelta(0), timedelta(minutes=5), 2 * STEP)
    ])  # fmt: skip
    window = load_window(vee_store.engine, [meter.id], since, since + timedelta(days=1))
    assert window.intervals[(meter.id, "1.8.0")].ts == [
        int((since + at).timestamp()) for at in (timedelta(0), timedelta(minutes=5), 2 * STEP)
    ]
    report = validate(vee_store, since=since, until=since + timedelta(days=1), settings=CFG)
    assert report.anomalies.get("duplicate_interval") == 1


def test_a_window_of_one_missing_interval_is_validated(vee_store: Store) -> None:
    """A series whose window holds one interval, missing, is read (its value column is
    then the empty text) and flagged."""
    meter = _meter(vee_store, 1)
    assert meter.id is not None
    since = START + timedelta(days=2)
    vee_store.ingest_intervals([Interval(meter_id=meter.id, channel="1.8.0", start=since,
                                         end=since + STEP, value=None,
                                         quality=Quality.MISSING)])  # fmt: skip
    report = validate(vee_store, since=since, until=since + timedelta(days=1), settings=CFG)
    assert report.intervals == 1
    assert report.anomalies.get("missing_interval") == 1


def test_backfill_replaces_an_estimate_and_keeps_history(vee_store: Store) -> None:
    meter = _meter(vee_store, 2)
    assert meter.id is not None
    _store_reads(vee_store, meter, [0.1] * 96, failed=range(11, 12))
    validate(vee_store, since=START, until=START + timedelta(days=1), settings=CFG)
    at = START + 10 * STEP
    estimate = vee_store.intervals(meter.id, "1.8.0", at, at + STEP)[0]
    assert estimate.quality is Quality.SUBSTITUTED
    actual = estimate.__class__(meter_id=meter.id, channel="1.8.0", start=at, end=at + STEP,
                                value=Decimal("0.13"))  # fmt: skip
    (stored,) = record_backfill(vee_store, [actual])
    assert stored.version == estimate.version + 1
    latest = vee_store.intervals(meter.id, "1.8.0", at, at + STEP)[0]
    assert (latest.quality, latest.value, latest.source) == (
        Quality.ACTUAL, Decimal("0.13"), Source.BACKFILL
    )
    history = vee_store.intervals(meter.id, "1.8.0", at, at + STEP, version="all")
    assert [iv.version for iv in history] == [1, 2, 3, 4][: len(history)]
    assert record_backfill(vee_store, [actual]) == []  # the same actual again: nothing new
    # validation does not estimate over the backfilled actual again
    assert validate(vee_store, since=START, until=START + timedelta(days=1),
                    settings=CFG).versions == 0  # fmt: skip


def test_operator_edit_is_a_version_with_who_and_why(vee_store: Store) -> None:
    meter = _meter(vee_store, 3)
    assert meter.id is not None
    _store_reads(vee_store, meter, [0.1] * 8)
    at = START + 2 * STEP
    edit = edit_interval(vee_store, meter_id=meter.id, channel="1.8.0", start=at, end=at + STEP,
                         value=Decimal("0.2"), by="alice", reason="meter test load",
                         comment="ticket 42")  # fmt: skip
    history = vee_store.intervals(meter.id, "1.8.0", at, at + STEP, version="all")
    assert [iv.version for iv in history] == [1, 2]
    assert history[0].value == Decimal("0.1")
    assert (history[1].created_by, history[1].comment, history[1].method) == (
        "alice", "meter test load: ticket 42", 16
    )
    assert edit.reason_codes == ("2.7.0",)
    with pytest.raises(ReadingRejected, match="reason"):
        edit_interval(vee_store, meter_id=meter.id, channel="1.8.0", start=at, end=at + STEP,
                      value=Decimal(1), by="alice", reason=" ")  # fmt: skip
    with pytest.raises(ReadingRejected, match="operator"):
        edit_interval(vee_store, meter_id=meter.id, channel="1.8.0", start=at, end=at + STEP,
                      value=Decimal(1), by="amigate", reason="x")  # fmt: skip
    second = edit_interval(vee_store, meter_id=meter.id, channel="1.8.0", start=at,
                           end=at + STEP, value=Decimal("0.3"), by="bob", reason="recount")
    assert second.version == 3


def test_meter_profiles_round_trip(vee_store: Store) -> None:
    meter = _meter(vee_store, 4)
    assert meter.id is not None
    profile = MeterProfile(meter_id=meter.id, phases=3, contract_kw=Decimal("12.5"),
                           has_generation=True, register_capacity=Decimal(100000))
    set_meter_profile(vee_store.engine, profile)
    set_meter_profile(vee_store.engine, profile)
    assert meter_profiles(vee_store.engine) == {meter.id: profile}


def _area(store: Store) -> tuple[Meter, Meter, Meter]:
    total = _meter(store, 10, transformer_area="T1", role=MeterRole.AREA_TOTAL)
    a = _meter(store, 11, transformer_area="T1")
    b = _meter(store, 12, transformer_area="T1")
    return total, a, b


def test_line_loss_classes_and_theft_suspicion(vee_store: Store) -> None:
    total, a, b = _area(vee_store)
    days = 8
    # days 0-3 normal (5 % loss); days 4-6 customer b's meter shows 3 % of its usual
    # consumption while the supply stays: loss 51 %; day 7 supply below consumption
    supply = [0.21] * (4 * 96) + [0.21] * (3 * 96) + [0.15] * 96
    cons_a = [0.1] * (days * 96)
    cons_b = [0.0995] * (4 * 96) + [0.00285] * (3 * 96) + [0.1] * 96
    _store_reads(vee_store, total, supply)
    _store_reads(vee_store, a, cons_a)
    _store_reads(vee_store, b, cons_b)
    report = validate(vee_store, since=START, until=START + timedelta(days=days),
                      settings=VeeSettings(history_min_days=3))  # fmt: skip
    status = [d.status for d in report.loss_days]
    assert status == ["normal"] * 4 + ["high"] * 3 + ["negative"]
    assert report.loss_days[0].rate == pytest.approx(0.05)
    assert report.loss_days[4].rate == pytest.approx(0.51024, abs=1e-5)
    kinds = {(x.kind, x.meter_id, x.transformer_area) for x in list_anomalies(vee_store.engine)}
    assert ("line_loss_high", None, "T1") in kinds
    assert ("line_loss_negative", None, "T1") in kinds
    assert ("theft_suspected", b.id, "T1") in kinds
    assert ("theft_suspected", a.id, "T1") not in kinds
    theft = list_anomalies(vee_store.engine, kind="theft_suspected")[0]
    assert theft.evidence["drop"] > 0.9 and len(theft.evidence["loss_rates"]) == 3


def test_line_loss_not_computable_names_the_meters(vee_store: Store) -> None:
    total, a, b = _area(vee_store)
    _store_reads(vee_store, total, [0.21] * 96)
    _store_reads(vee_store, a, [0.1] * 96)
    # the last reads of the day fail: an open gap, not estimated
    _store_reads(vee_store, b, [0.1] * 96, failed=range(91, 97))
    report = validate(vee_store, since=START, until=START + timedelta(days=1), settings=CFG)
    (day,) = report.loss_days
    assert (day.status, day.missing_meters) == ("not_computable", (b.id,))
    (found,) = list_anomalies(vee_store.engine, kind="line_loss_not_computable")
    assert found.evidence["missing_meters"] == [b.id]


def test_unknown_rule_is_refused(vee_store: Store) -> None:
    with pytest.raises(ValueError, match="no_such_rule"):
        validate(vee_store, since=START, rules=["no_such_rule"])


def test_area_without_supply_meter_raises_nothing(vee_store: Store) -> None:
    a = _meter(vee_store, 21, transformer_area="T2")
    _store_reads(vee_store, a, [0.1] * 96)
    report = validate(vee_store, since=START, until=START + timedelta(days=1), settings=CFG)
    assert [(d.status, d.missing_meters) for d in report.loss_days] == [("not_computable", ())]
    assert list_anomalies(vee_store.engine) == []


def test_incremental_hook_then_daily_batch_agree(vee_store: Store) -> None:
    meter = _meter(vee_store, 30)
    assert meter.id is not None
    # eight days; on the last, a 45-minute gap and a gap of 4 h 15 min
    last = 7 * 96
    failed = set(range(last + 11, last + 13)) | set(range(last + 41, last + 57))
    _store_reads(vee_store, meter, [0.1] * (8 * 96), failed=failed)
    since = START + timedelta(days=7)
    report = validate_since(vee_store, since)
    assert report.loss_days == []
    assert report.versions == 3  # the short gap only: like-day needs the batch's history
    assert report.anomalies == {"missing_interval": 2}
    ids = [a.id for a in list_anomalies(vee_store.engine)]
    batch = validate(vee_store, since=since, until=START + timedelta(days=8), settings=CFG)
    assert batch.versions == 17  # the long gap, from like days
    latest = vee_store.intervals(meter.id, "1.8.0", since + 40 * STEP, since + 57 * STEP)
    assert {iv.method for iv in latest} == {15}
    assert sum(iv.value for iv in latest if iv.value is not None) == Decimal("1.7")
    assert [a.id for a in list_anomalies(vee_store.engine)] == ids  # the same records
    assert validate_since(vee_store, since).versions == 0


def test_samples_are_read_for_the_meters_that_need_them(vee_store: Store) -> None:
    three = vee_store.add_meter(Meter(address="000000000040", protocol=Protocol.DLT645_2007,
                                      model="dlt645-2007-three-phase", bus="b"))  # fmt: skip
    assert three.id is not None
    _store_reads(vee_store, three, [0.01] * 8)
    samples = []
    for k in range(8):
        at = START + k * STEP
        for channel, value in (("32.7.0", "220"), ("52.7.0", "220"), ("72.7.0", "100" if k > 3
                               else "220"), ("31.7.0", "1"), ("51.7.0", "1"), ("71.7.0", "1")):
            samples.append(Sample(meter_id=three.id, channel=channel, at=at, value=Decimal(value)))
    vee_store.ingest_samples(samples)
    validate(vee_store, since=START, until=START + timedelta(days=1), settings=CFG)
    (found,) = list_anomalies(vee_store.engine, kind="voltage_loss")
    assert (found.meter_id, found.subject, found.start) == (three.id, "L3", START + 4 * STEP)
    assert found.evidence["voltage"] == 100.0
