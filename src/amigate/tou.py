"""Time-of-use schedules: which tariff period (e.g. 尖/峰/平/谷) a moment falls in.

A schedule names its periods and gives each a list of local time-of-day ranges
(``"08:00-11:00"``; ``"24:00"`` ends a day). The ranges of all periods together
cover the day exactly once. Holidays (and, when asked, weekends) are billed
entirely in one period. An interval belongs to the period its start falls in.

Pure: pydantic and the standard library only.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DAY_MINUTES = 24 * 60


def _parse_clock(text: str) -> int:
    """``HH:MM`` to minutes after midnight (``24:00`` is 1440).

    Raises:
        ValueError: not a valid time of day.
    """
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > _DAY_MINUTES:
        raise ValueError(f"{text!r} is not a time of day within 00:00..24:00")
    return value


def parse_range(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` to ``(start, end)`` minutes after midnight.

    Raises:
        ValueError: malformed, or the range is empty or runs backwards.
    """
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a range HH:MM-HH:MM")
    start, end = _parse_clock(first), _parse_clock(last)
    if end <= start:
        raise ValueError(f"range {text!r} ends before it starts (split ranges at midnight)")
    return start, end


class TouSchedule(BaseModel):
    """A time-of-use schedule (the ``[tou]`` table of the settings file).

    Attributes:
        periods: period name -> local time-of-day ranges ``HH:MM-HH:MM``.
        holidays: local dates billed entirely in ``holiday_period``.
        holiday_period: the period of a holiday (none: holidays follow the daily ranges).
        weekends_as_holidays: Saturdays and Sundays are billed like holidays.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    periods: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "尖": ["19:00-21:00"],
            "峰": ["08:00-11:00", "17:00-19:00"],
            "平": ["11:00-17:00", "21:00-23:00"],
            "谷": ["00:00-08:00", "23:00-24:00"],
        },
        description="period name -> local time-of-day ranges HH:MM-HH:MM covering the day once",
    )
    holidays: list[date] = Field(default_factory=list, description="dates billed in one period")
    holiday_period: str | None = Field(default=None, description="the period of a holiday")
    weekends_as_holidays: bool = Field(default=False, description="weekends billed as holidays")

    @field_validator("periods")
    @classmethod
    def _check_periods(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("needs at least one period")
        owner: list[str | None] = [None] * _DAY_MINUTES
        for name, ranges in value.items():
            if not name or len(name) > 32:
                raise ValueError(f"period name {name!r} must be 1..32 characters")
            for text in ranges:
                start, end = parse_range(text)
                for minute in range(start, end):
                    if owner[minute] is not None:
                        raise ValueError(
                            f"{name} {text} overlaps {owner[minute]} at {minute // 60:02d}:"
                            f"{minute % 60:02d}"
                        )
                    owner[minute] = name
        if None in owner:
            gap = owner.index(None)
            raise ValueError(f"no period covers {gap // 60:02d}:{gap % 60:02d}")
        return value

    @model_validator(mode="after")
    def _check_holiday_period(self) -> TouSchedule:
        if self.holiday_period is not None and self.holiday_period not in self.periods:
            raise ValueError(f"holiday_period {self.holiday_period!r} is not one of the periods")
        if (self.holidays or self.weekends_as_holidays) and self.holiday_period is None:
            raise ValueError("holidays need a holiday_period")
        return self

    def classifier(self, zone: ZoneInfo) -> TouClassifier:
        """A fast classifier of instants in ``zone``."""
        return TouClassifier(self, zone)


class TouClassifier:
    """Maps aware instants to period names for one schedule and timezone."""

    def __init__(self, schedule: TouSchedule, zone: ZoneInfo) -> None:
        """Precompute a minute-of-day table of ``schedule`` in ``zone``."""
        self.zone = zone
        self.names = list(schedule.periods)
        self._by_minute: list[str] = [""] * _DAY_MINUTES
        for name, ranges in schedule.periods.items():
            for text in ranges:
                start, end = parse_range(text)
                for minute in range(start, end):
                    self._by_minute[minute] = name
        self._holiday = schedule.holiday_period
        self._holidays = frozenset(schedule.holidays)
        self._weekends = schedule.weekends_as_holidays
        self._cache: dict[datetime, str] = {}
        self._ranges: list[tuple[int, int, str]] = []
        for minute, name in enumerate(self._by_minute):
            if self._ranges and self._ranges[-1][2] == name:
                self._ranges[-1] = (self._ranges[-1][0], minute + 1, name)
            else:
                self._ranges.append((minute, minute + 1, name))

    def ranges(self) -> list[tuple[int, int, str]]:
        """The day as ``(first minute, end minute, period)`` runs, in order."""
        return list(self._ranges)

    def special_days(self, start: datetime, end: datetime) -> tuple[str | None, list[date], bool]:
        """``(holiday period, holidays within the range, weekends count as holidays)``."""
        if self._holiday is None:
            return None, [], False
        low, high = start.astimezone(self.zone).date(), end.astimezone(self.zone).date()
        return self._holiday, sorted(d for d in self._holidays if low <= d <= high), self._weekends

    def holiday(self, day: date) -> str | None:
        """The period a whole local day is billed in, when it is a holiday (else None)."""
        if self._holiday is not None and (
            day in self._holidays or (self._weekends and day.weekday() >= 5)
        ):
            return self._holiday
        return None

    def period(self, when: datetime) -> str:
        """The period of the aware instant ``when`` (memoised: series share their starts)."""
        found = self._cache.get(when)
        if found is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            found = self._cache[when] = self._classify(when)
        return found

    def _classify(self, when: datetime) -> str:
        local = when.astimezone(self.zone)
        return self.holiday(local.date()) or self._by_minute[local.hour * 60 + local.minute]

    def period_at(self, day: date, clock: time) -> str:
        """The period of a local date and time of day."""
        return self.period(datetime.combine(day, clock, self.zone))
