"""Find the meters on a Modbus bus and guess their models from plausible readings.

Modbus RTU has no discovery: every ID is asked in turn. An ID that does not
answer its first probe is taken as empty (a real meter answers every request,
with data or an exception). For an ID that answers, each model is probed by
reading its phase voltages (and frequency): a model matches when they are all
plausible, i.e. within 15 % of its rated voltage (and 45–65 Hz).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from amigate.drivers.modbus import ModbusBus
from amigate.drivers.modbus_plan import decode_block, plan_blocks
from amigate.errors import AmigateError, DataError, DeviceRejected, ReadTimeout, UnexpectedReply
from amigate.meter_models import MeterModel, PointSpec

__all__ = ["ScanResult", "parse_ids", "probe_points", "scan_bus"]

_VOLTAGES = ("32.7.0", "52.7.0", "72.7.0")
_TOLERANCE = Decimal("0.15")


@dataclass(frozen=True)
class ScanResult:
    """What one device ID did when probed.

    Attributes:
        device_id: the ID.
        answers: it replied to something (data or an exception).
        models: the models whose probe readings are plausible, most specific first.
        detail: a note (readings of the best match, or why nothing matched).
    """

    device_id: int
    answers: bool
    models: tuple[str, ...] = ()
    detail: str = ""
    readings: dict[str, str] = field(default_factory=dict)


def parse_ids(text: str) -> list[int]:
    """Parse ``1-247``, ``1,2,5-9`` into a list of device IDs.

    Raises:
        ValueError: malformed, or an ID outside 1..247.
    """
    ids: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        low, high = int(first), int(last or first)
        if not 1 <= low <= high <= 247:
            raise ValueError(f"device IDs {part.strip()!r} must lie within 1..247")
        ids.extend(range(low, high + 1))
    return sorted(set(ids))


def probe_points(model: MeterModel) -> tuple[PointSpec, ...]:
    """The points that identify ``model``: its phase voltages and its frequency."""
    channels = (*_VOLTAGES[: model.phases], "14.7.0")
    return tuple(p for p in model.points if p.channel in channels and p.source is not None)


def _plausible(model: MeterModel, channel: str, value: Decimal | None) -> bool:
    if value is None:
        return False
    if channel == "14.7.0":
        return Decimal(45) <= value <= Decimal(65)
    rated = model.rated.voltage_v
    return abs(value - rated) <= rated * _TOLERANCE


async def _probe(
    bus: ModbusBus,
    device_id: int,
    model: MeterModel,
    timeout: float,  # noqa: ASYNC109
) -> tuple[bool, dict[str, Decimal | None]]:
    """Read the model's probe points; return (plausible, readings). Raises ReadTimeout."""
    assert model.modbus is not None
    points = probe_points(model)
    readings: dict[str, Decimal | None] = {}
    for block in plan_blocks(points, model.modbus):
        try:
            registers = await bus.read(
                device_id, block.function, block.address, block.count, timeout=timeout, retries=0
            )
            values = decode_block(block, registers)
        except (DeviceRejected, UnexpectedReply, DataError):
            return False, readings
        readings.update((v.channel, v.value) for v in values)
    ok = bool(points) and all(_plausible(model, p.channel, readings.get(p.channel)) for p in points)
    return ok, readings


async def scan_bus(
    bus: ModbusBus,
    models: Iterable[MeterModel],
    ids: Sequence[int],
    *,
    timeout: float = 0.2,  # noqa: ASYNC109
) -> list[ScanResult]:
    """Probe ``ids`` on ``bus`` and match each answering one against ``models``.

    Args:
        bus: an open bus.
        models: candidate Modbus models.
        ids: device IDs to try.
        timeout: seconds to wait for each reply (no retries).

    Returns:
        One result per ID, in ID order.

    Raises:
        TransportError: the bus itself failed (other than a meter not answering).
    """
    candidates = [m for m in models if m.modbus is not None and probe_points(m)]
    results = []
    for device_id in ids:
        answered = False
        matches: list[tuple[int, str, dict[str, Decimal | None]]] = []
        for index, model in enumerate(candidates):
            try:
                ok, readings = await _probe(bus, device_id, model, timeout)
            except ReadTimeout:
                if index == 0:
                    break  # nothing at this ID
                continue
            except AmigateError:
                raise
            answered = True
            if ok:
                matches.append((len(readings), model.id, readings))
        if not answered:
            results.append(ScanResult(device_id, False, detail="no answer"))
            continue
        matches.sort(key=lambda m: (-m[0], m[1]))
        if not matches:
            results.append(ScanResult(device_id, True, detail="answers; no model plausible"))
            continue
        best = {k: str(v) for k, v in matches[0][2].items()}
        results.append(ScanResult(device_id, True, tuple(m[1] for m in matches), "plausible", best))
    return results
