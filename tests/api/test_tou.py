"""Pure parts of billing: time-of-use schedules, local buckets, determinant arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from amigate.billing.buckets import aggregate, buckets, floor_local
from amigate.billing.determinants import BoundaryRead, compute
from amigate.config import load_settings
from amigate.domain import Quality
from amigate.errors import ConfigError
from amigate.tou import TouSchedule, parse_range

SHANGHAI = ZoneInfo("Asia/Shanghai")
JAN1 = datetime(2026, 1, 1, tzinfo=SHANGHAI)


def test_default_schedule_periods_at_their_boundaries() -> None:
    tou = TouSchedule().classifier(SHANGHAI)
    day = date(2026, 1, 5)
    assert [tou.period_at(day, time(h, m)) for h, m in (
        (0, 0), (7, 59), (8, 0), (10, 59), (11, 0), (16, 59), (17, 0), (19, 0), (20, 59),
        (21, 0), (22, 59), (23, 0), (23, 59))] == [
        "谷", "谷", "峰", "峰", "平", "平", "峰", "尖", "尖", "平", "平", "谷", "谷"]  # fmt: skip
    # A UTC instant is classified in local time: 00:00 UTC is 08:00 in Shanghai.
    assert tou.period(datetime(2026, 1, 5, 0, 0, tzinfo=UTC)) == "峰"
    assert tou.period(datetime(2026, 1, 4, 23, 59, tzinfo=UTC)) == "谷"


def test_holidays_and_weekends() -> None:
    schedule = TouSchedule(periods={"peak": ["08:00-20:00"], "off": ["00:00-08:00",
                                                                      "20:00-24:00"]},
                           holidays=[date(2026, 10, 1)], holiday_period="off",
                           weekends_as_holidays=True)  # fmt: skip
    tou = schedule.classifier(SHANGHAI)
    assert tou.period_at(date(2026, 10, 1), time(12)) == "off"  # a holiday (Thursday)
    assert tou.period_at(date(2026, 10, 2), time(12)) == "peak"
    assert tou.period_at(date(2026, 10, 3), time(12)) == "off"  # Saturday
    assert tou.names == ["peak", "off"]


@pytest.mark.parametrize(("periods", "message"), [
    ({"a": ["00:00-12:00"]}, "no period covers 12:00"),
    ({"a": ["00:00-13:00"], "b": ["12:00-24:00"]}, "overlaps a at 12:00"),
    ({"a": ["00:00-24:00"], "b": []}, None),
    ({"a": ["10:00-08:00"]}, "ends before it starts"),
    ({"a": ["08:00"]}, "not a range"),
    ({"a": ["0000-2400"]}, "not a time of day"),
    ({"a": ["00:00-24:30"]}, "within 00:00..24:00"),
])  # fmt: skip
def test_schedules_are_validated(periods: dict[str, list[str]], message: str | None) -> None:
    if message is None:
        assert TouSchedule(periods=periods).periods == periods
        return
    with pytest.raises(ValidationError, match=message):
        TouSchedule(periods=periods)


def test_holidays_need_a_known_period() -> None:
    with pytest.raises(ValidationError, match="holidays need a holiday_period"):
        TouSchedule(holidays=[date(2026, 1, 1)])
    with pytest.raises(ValidationError, match="not one of the periods"):
        TouSchedule(holiday_period="nope")
    assert parse_range("23:00-24:00") == (1380, 1440)


def test_schedule_from_the_settings_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "amigate.toml"
    path.write_text('[tou]\nholidays = ["2026-01-01"]\nholiday_period = "谷"\n[tou.periods]\n'
                    '"峰" = ["08:00-22:00"]\n"谷" = ["00:00-08:00", "22:00-24:00"]\n',
                    encoding="utf-8")  # fmt: skip
    settings = load_settings(path)
    assert settings.tou.holidays == [date(2026, 1, 1)]
    assert settings.tou.classifier(SHANGHAI).period_at(date(2026, 1, 1), time(12)) == "谷"
    path.write_text('[tou.periods]\n"峰" = ["08:00-22:00"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="no period covers 00:00"):
        load_settings(path)


def test_local_buckets_at_a_month_edge() -> None:
    feb1 = datetime(2026, 2, 1, tzinfo=SHANGHAI)
    assert floor_local(feb1 - timedelta(microseconds=1), "month", SHANGHAI) == JAN1
    months = list(buckets(JAN1 - timedelta(days=1), feb1 + timedelta(days=1), "month", SHANGHAI))
    assert [(b.start.astimezone(SHANGHAI).date(), b.end.astimezone(SHANGHAI).date())
            for b in months] == [(date(2025, 12, 1), date(2026, 1, 1)),
                                 (date(2026, 1, 1), date(2026, 2, 1)),
                                 (date(2026, 2, 1), date(2026, 3, 1))]  # fmt: skip
    dec = list(buckets(datetime(2026, 12, 5, tzinfo=SHANGHAI), datetime(2027, 1, 2,
                       tzinfo=SHANGHAI), "month", SHANGHAI))  # fmt: skip
    assert dec[-1].start == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    q = timedelta(minutes=15)
    rows = [(feb1 - q, 900, 7, 0), (feb1, 900, None, int(Quality.MISSING)), (feb1 + q, 900, 5, 1)]
    jan, feb = aggregate(rows, JAN1, feb1 + 2 * q, "month", SHANGHAI)
    assert (jan.value, jan.with_value, feb.value, feb.missing, feb.not_actual) == (7, 1, 5, 1, 1)
    assert feb.completeness(JAN1, feb1 + 2 * q) == 0.5


def test_determinant_arithmetic_is_exact() -> None:
    tou = TouSchedule().classifier(SHANGHAI)
    q = 900
    start = datetime(2026, 1, 1, 7, 30, tzinfo=SHANGHAI)
    end = start + timedelta(hours=1)
    step = timedelta(seconds=q)
    rows = [
        (start, q, 100_001, 0),
        (start + step, q, 200_003, 1),  # 07:30, 07:45 谷
        (start + 2 * step, q, 300_007, 0),
        (start + 3 * step, q, 1, 2),
    ]  # 08:00, 08:15 峰
    d = compute(meter_id=1, start=start, end=end, rows=rows,
                start_read=BoundaryRead(start + timedelta(seconds=3), 1_000_000),
                end_read=BoundaryRead(end, 1_060_004), multiplier=Decimal(10), classifier=tou,
                interval_s=q)  # fmt: skip
    assert d.consumption == 600_012
    assert (d.tou["谷"].energy, d.tou["峰"].energy) == (300_004, 300_008)
    assert (d.register_delta, d.difference) == (Decimal(600_040), Decimal(-28))
    assert d.reasons == ["register_mismatch"]
    assert (d.max_demand, d.max_demand_at) == (Decimal(1_200_028), start + 2 * step)
    assert (d.estimated_intervals, d.estimated_energy) == (2, 200_004)
    # A span (one row covering a gap) counts for energy and coverage, not for demand.
    span = [(start, 3 * q, 900_000, 0), (start + 3 * step, q, 1, 0)]
    d = compute(meter_id=1, start=start, end=end, rows=span, start_read=None, end_read=None,
                multiplier=Decimal(1), classifier=tou, interval_s=q)  # fmt: skip
    assert d.completeness == 1.0 and d.max_demand == Decimal(4)
    assert d.reasons == ["no_start_read", "no_end_read"]
