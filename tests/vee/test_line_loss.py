"""Line loss classes at their edges, and what makes a day not computable."""

from __future__ import annotations

from amigate.config import VeeSettings
from amigate.domain import MeterRole
from amigate.vee.context import MeterData
from amigate.vee.line_loss import area_line_loss
from tests.vee.builders import DAY, T0, data, facts, intervals

CFG = VeeSettings()


def _member(meter_id: int, per_slot: float | None, *, total: bool = False,
            missing: int = 0) -> MeterData:  # fmt: skip
    values: list[float | None] = [per_slot] * 96
    for k in range(missing):
        values[k] = None
    role = MeterRole.AREA_TOTAL if total else MeterRole.CUSTOMER
    return data(facts(meter_id, role=role, area="A"), intervals={"1.8.0": intervals(values)},
                until=T0 + DAY)  # fmt: skip


def _status(supply: float, customers: list[float]) -> tuple[str, float | None]:
    members = [_member(1, supply, total=True)]
    members += [_member(2 + i, c) for i, c in enumerate(customers)]
    (day,), _ = area_line_loss("A", members, CFG)
    return day.status, day.rate


def test_loss_bands_at_their_edges() -> None:
    assert _status(1.0, [0.45, 0.45]) == ("normal", 0.1)  # exactly 10 %: still normal
    assert _status(1.0, [0.45, 0.4499]) == ("high", 0.1001)
    assert _status(1.0, [0.5, 0.5]) == ("normal", 0.0)
    assert _status(1.0, [0.5, 0.5001]) == ("negative", -0.0001)


def test_missing_intervals_make_the_day_not_computable_naming_meters() -> None:
    members = [_member(1, 1.0, total=True), _member(2, 0.4, missing=3), _member(3, 0.4)]
    (day,), anomalies = area_line_loss("A", members, CFG)
    assert (day.status, day.missing_meters, day.rate) == ("not_computable", (2,), None)
    (found,) = anomalies
    assert (found.kind, found.transformer_area, found.evidence["missing_meters"]) == (
        "line_loss_not_computable", "A", [2]
    )
