"""Daily freezes: a meter that cannot give its freeze is tried a few times a day, logged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from amigate.domain import Meter, Protocol
from amigate.errors import AmigateError, DeviceRejected, ReadTimeout
from amigate.freezes import FreezeReads
from amigate.meter_models import MeterModel, PointSpec
from amigate.readers import FreezeRecord, LoadRecord

#: 01:00 in Asia/Shanghai.
NOW = datetime(2026, 5, 4, 17, 0, tzinfo=UTC)


class FailingMeter:
    """A memory reader whose freeze reads all fail with ``error``."""

    def __init__(self, error: AmigateError) -> None:
        self.error = error
        self.calls = 0

    async def read_load_profile(
        self, point: PointSpec, since: datetime, count: int
    ) -> list[LoadRecord]:
        raise AssertionError("not used")

    async def read_freeze(self, points: Sequence[PointSpec], nth: int) -> FreezeRecord:
        self.calls += 1
        raise self.error


def _freezes(models: dict[str, MeterModel]) -> tuple[FreezeReads, Meter]:
    meter = Meter(id=1, address="000000000001", protocol=Protocol.DLT645_2007,
                  model="dlt645-2007-single-phase", bus="b1", timezone="Asia/Shanghai")  # fmt: skip
    return FreezeReads("b1", [meter], models), meter


async def _idle_turns(freezes: FreezeReads, reader: FailingMeter, at: datetime, n: int) -> None:
    for i in range(n):
        now = at + timedelta(minutes=i)
        for meter in freezes.due(now, lambda _id: True):
            assert await freezes.read(meter, reader, lambda now=now: now, None) == []


@pytest.mark.parametrize(
    ("error", "tries"),
    [(ReadTimeout("no reply within 1.0 s"), 3),
     (DeviceRejected("error byte 0x02: no data requested", code=2), 1)],
)  # fmt: skip
async def test_a_failing_freeze_read_is_retried_a_few_times_and_logged_once_a_day(
    models: dict[str, MeterModel], caplog: pytest.LogCaptureFixture, error: AmigateError,
    tries: int,
) -> None:  # fmt: skip
    freezes, _meter = _freezes(models)
    reader = FailingMeter(error)
    with caplog.at_level(logging.WARNING, logger="amigate.freezes"):
        await _idle_turns(freezes, reader, NOW, 30)
    assert reader.calls == tries
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == min(tries, 2)
    assert "next try on its next day" in warnings[-1]
    # The meter's next local day: tried again.
    await _idle_turns(freezes, reader, NOW + timedelta(days=1), 30)
    assert reader.calls == 2 * tries
