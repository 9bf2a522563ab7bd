"""Simulated meters take load-profile records and daily freezes by their own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from amigate.meter_models import load_models
from amigate.simulators import LoadShape, MeterPhysics

T0 = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)  # 12:00 in the meters' local time (UTC+8)


def _physics(**kwargs: float) -> MeterPhysics:
    model = load_models()["dlt645-2007-single-phase"]
    shape = LoadShape(kind="constant", kw=Decimal("1.2"), noise=0)  # 0.02 kWh a minute
    return MeterPhysics(model=model, shape=shape, start=T0, **kwargs)  # type: ignore[arg-type]


def _records(physics: MeterPhysics) -> list[tuple[str, Decimal]]:
    return [(r.stamp.strftime("%H:%M:%S"), r.import_kwh) for r in physics.load_profile]


def test_a_right_clock_records_at_the_true_boundaries() -> None:
    physics = _physics()
    physics.advance(T0 + timedelta(hours=1))
    assert _records(physics) == [
        ("12:15:00", Decimal("0.30")), ("12:30:00", Decimal("0.60")),
        ("12:45:00", Decimal("0.90")), ("13:00:00", Decimal("1.20")),
    ]  # fmt: skip


def test_a_clock_ahead_stamps_earlier_values_with_its_own_boundaries() -> None:
    physics = _physics(clock_offset_s=120)
    physics.advance(T0 + timedelta(hours=1))
    # Its clock shows 12:15 at 12:13 true time: 13 minutes of energy.
    assert _records(physics) == [
        ("12:15:00", Decimal("0.26")), ("12:30:00", Decimal("0.56")),
        ("12:45:00", Decimal("0.86")), ("13:00:00", Decimal("1.16")),
    ]  # fmt: skip


def test_a_clock_behind_and_a_daily_freeze_at_its_own_midnight() -> None:
    physics = _physics(clock_offset_s=-600)
    physics.advance(T0 + timedelta(hours=12, minutes=30))
    # 10 min behind: its 12:15 comes at 12:25 true time.
    assert _records(physics)[:2] == [("12:00:00", Decimal("0.20")), ("12:15:00", Decimal("0.50"))]
    # Its midnight comes at 00:10 true time: 12 h 10 min after the start.
    (freeze,) = physics.freezes
    assert freeze.stamp == datetime(2026, 11, 23, 0, 0)
    assert freeze.import_kwh[0] == Decimal("1.2") * Decimal(730) / 60


def test_a_drifting_clock_and_a_clock_set_move_the_records() -> None:
    physics = _physics(clock_drift_ppm=1000)  # 3.6 s an hour ahead
    physics.advance(T0 + timedelta(hours=10))
    last = physics.load_profile[-1]
    assert last.stamp == datetime(2026, 11, 22, 22, 0)
    assert last.import_kwh == Decimal("11.98")  # taken 36 s early: 599.4 min, truncated
    # A time set moving the clock 5 min back: the meter takes its records on the new clock.
    now = T0 + timedelta(hours=10)
    physics.set_meter_time(now, physics.meter_time(now) - timedelta(minutes=5))
    physics.advance(now + timedelta(minutes=30))
    # 22:00 comes again (4 min 24 s later, true time), then 22:15.
    assert _records(physics)[-3:] == [("22:00:00", Decimal("11.98")),
                                      ("22:00:00", Decimal("12.08")),
                                      ("22:15:00", Decimal("12.38"))]  # fmt: skip
