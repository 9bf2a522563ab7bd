"""Estimation of missing intervals: linear interpolation, like-day average, exact to the register.

A gap is a run of intervals collected as missing with a good interval after it
(gaps still open at the end of the data are left missing: their energy is not
known yet, and the collection service will close them with a gap span).

* The shape: gaps up to ``interpolation_limit_minutes`` get a straight line
  between the intervals either side (NEM12 method 17); longer gaps the average
  of the same time of day over the last ``like_days`` like days (method 15:
  Monday, Friday, Saturday and Sunday each alone, Tuesday–Thursday
  interchangeable, as in the WA metering code's like-day table).
* The total: when the collection service bridged the gap with a span (the
  register delta across it), the shape is scaled to that energy exactly, to
  the micro-unit (largest remainder), so the estimates sum to the register delta.

Estimates are new versions (the highest version + 1) with quality
``SUBSTITUTED``, the method and reason codes (``amigate.vee.quality``); the
original reads stay. Gaps already estimated, and gaps with an operator's edit,
are left alone, so a second run writes nothing. An actual that arrives later
(a load-profile backfill) is stored as a still higher version and supersedes
the estimate (:func:`amigate.vee.versions.record_backfill`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amigate.config import VeeSettings
from amigate.domain import SYSTEM_USER, Interval, Quality, Source, from_micro
from amigate.storage.vee_queries import VersionCell
from amigate.vee.context import DAY, MeterData, utc
from amigate.vee.quality import METHODS, REASONS

__all__ = ["estimate_meter", "like_day_class", "share_exactly"]

_MISSING = int(Quality.MISSING)
_ACTUAL = int(Quality.ACTUAL)
_FILLED = {int(Quality.SUBSTITUTED), int(Quality.ESTIMATED), int(Quality.FINAL_SUBSTITUTE)}


def like_day_class(day: int) -> int:
    """The like-day class of a local day number: Tue–Thu share one, other weekdays their own."""
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return 1 if weekday in (1, 2, 3) else weekday


def share_exactly(shape: Sequence[float], total: int) -> list[int]:
    """Split an integer ``total`` in proportion to ``shape`` so that the parts sum to it exactly.

    Largest-remainder rounding; a shape with no positive weight splits evenly.
    """
    weights = [max(0.0, w) for w in shape]
    mass = sum(weights)
    if mass <= 0:
        weights, mass = [1.0] * len(shape), float(len(shape))
    raw = [total * w / mass for w in weights]
    parts = [int(r // 1) for r in raw]
    rest = total - sum(parts)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - parts[i], reverse=True)
    for i in order[: abs(rest)]:
        parts[i] += 1 if rest > 0 else -1
    return parts


def estimate_meter(data: MeterData, cfg: VeeSettings, *, long_gaps: bool = True) -> list[Interval]:
    """Estimate every closed gap of every interval channel of one meter.

    Args:
        data: the meter's data.
        cfg: thresholds.
        long_gaps: also estimate gaps beyond the interpolation limit (like-day:
            needs the weeks of history a batch run reads).

    Returns:
        The new interval versions (empty when there is nothing new to estimate).
    """
    out: list[Interval] = []
    for channel in data.intervals:
        out += _estimate_channel(data, cfg, channel, long_gaps)
    return out


def _estimate_channel(
    data: MeterData, cfg: VeeSettings, channel: str, long_gaps: bool
) -> list[Interval]:
    cols = data.intervals[channel]
    if not cols.ts or _MISSING not in cols.quality:
        return []
    cells = data.versions.get(channel, {})
    ts, values, qualities = cols.ts, cols.value, cols.quality
    step = data.step(channel)
    out: list[Interval] = []
    n = len(ts)
    i = 0
    while i < n:
        if qualities[i] != _MISSING or ts[i] < data.since - DAY:
            i += 1
            continue
        first = i
        span = cells.get(ts[first])
        if span is not None and span.duration > step and span.value is not None:
            count = span.duration // step
            total: int | None = span.value
        else:
            count, total = 0, None
            while first + count < n and qualities[first + count] == _MISSING:
                count += 1
        i = first + max(count, 1)
        gap = list(range(first, min(first + count, n)))
        if len(gap) != count or ts[first:first + count] != list(
            range(ts[first], ts[first] + count * step, step)
        ):
            continue  # not a contiguous run of stored slots
        if total is None and (first + count >= n or values[first + count] is None):
            continue  # open gap: nothing after it yet
        if _already_done(cells, ts, gap, step):
            continue
        if not long_gaps and count * step > cfg.interpolation_limit_minutes * 60:
            continue  # like-day: left to the batch run, which reads the history it needs
        out += _fill(data, cfg, channel, gap, step, total)
    return out


def _already_done(
    cells: Mapping[int, VersionCell], ts: list[int], gap: list[int], step: int
) -> bool:
    for k in gap:
        cell = cells.get(ts[k])
        if cell is None:
            return False
        if cell.created_by != SYSTEM_USER:
            return True  # an operator edited it: never overwrite
        if cell.quality not in _FILLED and not (cell.quality == _ACTUAL and cell.duration == step):
            return False
    return True


def _fill(
    data: MeterData,
    cfg: VeeSettings,
    channel: str,
    gap: list[int],
    step: int,
    total: int | None,
) -> list[Interval]:
    cols = data.intervals[channel]
    ts, values = cols.ts, cols.value
    first, last = gap[0], gap[-1]
    before = values[first - 1] if first > 0 and cols.quality[first - 1] == _ACTUAL else None
    after = values[last + 1] if last + 1 < len(ts) and cols.quality[last + 1] == _ACTUAL else None
    seconds = len(gap) * step
    shape: list[float] | None = None
    method = METHODS["linear"]
    if seconds > cfg.interpolation_limit_minutes * 60:
        shape = _like_day_shape(data, cfg, channel, [ts[k] for k in gap], step)
        if shape is not None:
            method = METHODS["like_day_average"]
    if shape is None:
        a = before if before is not None else after
        b = after if after is not None else before
        if a is None or b is None:
            a = b = 0
        n = len(gap)
        shape = [a + (b - a) * (k + 1) / (n + 1) for k in range(n)]
    reasons = [REASONS["estimated"].iec]
    if total is not None:
        parts = share_exactly(shape, total)
        reasons.append(REASONS["estimated_span"].iec)
    else:
        parts = [round(x) for x in shape]
    cells = data.versions.get(channel, {})
    out = []
    for k, part in zip(gap, parts, strict=True):
        cell = cells.get(ts[k])
        out.append(Interval(
            meter_id=data.facts.meter_id, channel=channel, start=utc(ts[k]),
            end=utc(ts[k] + step), value=from_micro(part), quality=Quality.SUBSTITUTED,
            method=method.number, reason_codes=tuple(reasons),
            version=(cell.version if cell is not None else 1) + 1, source=Source.ESTIMATION,
        ))  # fmt: skip
    return out


def _like_day_shape(
    data: MeterData, cfg: VeeSettings, channel: str, starts: list[int], step: int
) -> list[float] | None:
    """The mean of each slot's time of day over the last like days with an actual there."""
    cols = data.intervals[channel]
    actual = {
        t: v for t, v, q in zip(cols.ts, cols.value, cols.quality, strict=True)
        if q == _ACTUAL and v is not None
    }  # fmt: skip
    shape: list[float] = []
    for start in starts:
        day = data.local_day(start)
        cls = like_day_class(day)
        found: list[int] = []
        back = 1
        while len(found) < cfg.like_days and back <= cfg.history_days:
            other = day - back
            back += 1
            if like_day_class(other) != cls:
                continue
            value = actual.get(start - (day - other) * DAY)
            if value is not None:
                found.append(value)
        if not found:
            return None
        shape.append(sum(found) / len(found))
    return shape
