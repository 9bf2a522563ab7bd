"""Interval rules: missing, overlapping (duplicate), spike, high/low vs history, zero, sum check."""

from __future__ import annotations

from bisect import bisect_left
from statistics import median
from typing import Any, cast

from amigate.config import VeeSettings
from amigate.domain import Anomaly, Quality, Severity
from amigate.vee.context import DAY, MICRO, MeterData
from amigate.vee.registry import rule, runs

__all__ = ["ENERGY", "complete_days"]

#: The channel energy rules look at: active import total.
ENERGY = "1.8.0"
_MISSING = int(Quality.MISSING)
_ACTUAL = int(Quality.ACTUAL)


def _kwh(micro: int) -> str:
    return str(round(micro / MICRO, 6))


@rule("missing_interval")
def missing_interval(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Runs of intervals collected as missing, one anomaly per run (IESO: found vs expected)."""
    out: list[Anomaly] = []
    for channel, cols in data.intervals.items():
        if _MISSING not in cols.quality:
            continue
        flags = [q == _MISSING for q in cols.quality]
        for first, last in runs(flags):
            end = cols.ts[last] + cols.duration[last]
            if end <= data.since:
                continue
            out.append(data.anomaly(
                "missing_interval", cols.ts[first], end, Severity.INFO,
                {"channel": channel, "intervals": last - first + 1}, subject=channel,
            ))  # fmt: skip
    return out


@rule("duplicate_interval")
def duplicate_interval(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """The same energy counted twice, or one boundary read twice with different values.

    Identical re-deliveries never reach the data (ingest is idempotent). What
    can: intervals of one channel that overlap (``duplicate_interval``), and two
    reads of the import register standing for the same interval boundary with
    different values (``duplicate_read``: which one the intervals used is a guess).
    """
    out: list[Anomaly] = _duplicate_reads(data)
    for channel, cols in data.intervals.items():
        ts, dur = cols.ts, cols.duration
        if not ts or (dur.count(dur[0]) == len(dur)
                      and ts == list(range(ts[0], ts[0] + len(ts) * dur[0], dur[0]))):  # fmt: skip
            continue  # one length, back to back: nothing can overlap (the first and last
            # start alone cannot tell: 0, 300 and 1800 span what a run of 900 s does)
        for i in range(1, len(ts)):
            if ts[i] < ts[i - 1] + dur[i - 1] and ts[i] + dur[i] > data.since:
                out.append(data.anomaly(
                    "duplicate_interval", ts[i], ts[i - 1] + dur[i - 1], Severity.WARNING,
                    {"channel": channel, "overlaps": ts[i - 1]}, subject=channel,
                ))  # fmt: skip
    return out


def _duplicate_reads(data: MeterData) -> list[Anomaly]:
    reads = data.registers.get(ENERGY)
    if reads is None or len(reads.ts) < 2:
        return []
    step = data.step(ENERGY)
    gaps = data.deltas(ENERGY)[1]
    if min(gaps) >= step:
        return []  # two reads standing for one boundary are less than an interval apart
    out = []
    ts, vs = reads.ts, reads.value
    for i in range(1, len(ts)):
        slot = ts[i] - ts[i] % step
        if slot == ts[i - 1] - ts[i - 1] % step and vs[i] != vs[i - 1] and ts[i] >= data.since:
            out.append(data.anomaly(
                "duplicate_read", slot, slot + step, Severity.WARNING,
                {"channel": ENERGY, "values": [_kwh(vs[i - 1]), _kwh(vs[i])],
                 "read_at": [ts[i - 1], ts[i]]}, subject=ENERGY,
            ))  # fmt: skip
    return out


def _actual_by_day(data: MeterData, channel: str) -> list[tuple[int, list[int], int]]:
    """Per local day: ``(day, actual version-1 values, index of the first)``.

    When a day has a missing or non-actual interval the list holds only its actuals
    and the index is -1 (the position of the maximum is then looked up by value).
    """
    cols = data.intervals.get(channel)
    if cols is None:
        return []
    out: list[tuple[int, list[int], int]] = []
    for day, a, b in data.day_slices(channel):
        qualities = cols.quality[a:b]
        if qualities.count(_ACTUAL) == b - a:
            out.append((day, cast("list[int]", cols.value[a:b]), a))
        else:
            values = [v for v, q in zip(cols.value[a:b], qualities, strict=True)
                      if q == _ACTUAL and v is not None]  # fmt: skip
            out.append((day, values, -1))
    return out


@rule("spike")
def spike(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """A day's highest interval far above its third-highest and above the meter's history.

    Oracle MDM's Interval Spike Check compares the highest with the third-highest
    interval of each 24 h; the history check keeps a day of genuinely peaky load
    (three similar peaks, or peaks the meter has seen before) from being flagged.
    """
    cols = data.intervals.get(ENERGY)
    floor = int(cfg.spike_min_kwh * MICRO)
    daily_max: dict[int, int] = {}
    out: list[Anomaly] = []
    first_day = data.local_day(data.since)
    for day, values, at in _actual_by_day(data, ENERGY):
        if len(values) < 3:
            continue
        top = sorted(values)
        high, third = top[-1], top[-3]
        history = [daily_max[d] for d in range(day - cfg.history_days, day) if d in daily_max]
        typical = median(history) if history else None
        ratio_ok = third <= 0 or (high - third) / third > cfg.spike_ratio
        history_ok = typical is None or high > cfg.spike_history_factor * typical
        flagged = high >= floor and ratio_ok and history_ok
        daily_max[day] = third if flagged else high  # a spike does not raise the history
        if flagged and day >= first_day and cols is not None:
            i = at + values.index(high) if at >= 0 else _index_of(cols.value, high, data, day)
            ts, dur = cols.ts[i], cols.duration[i]
            out.append(data.anomaly(
                "spike", ts, ts + dur, Severity.WARNING,
                {"channel": ENERGY, "value_kwh": _kwh(high), "third_highest_kwh": _kwh(third),
                 "history_max_kwh": None if typical is None else _kwh(int(typical))},
                subject=ENERGY,
            ))  # fmt: skip
    return out


def _index_of(values: list[int | None], value: int, data: MeterData, day: int) -> int:
    for d, a, b in data.day_slices(ENERGY):
        if d == day:
            return a + values[a:b].index(value)
    raise ValueError(value)  # pragma: no cover - the value came from that day


def complete_days(data: MeterData, channel: str = ENERGY) -> dict[int, int]:
    """Energy (micro-units) of each local day with no missing interval in the latest view."""
    return {d: e for d, (e, _known, missing) in data.daily_energy(channel).items() if not missing}


@rule("usage_vs_history")
def usage_vs_history(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """A day's consumption far above or below the median of the meter's own recent days.

    Oracle's High/Low check and NEM12 reasons 73/74; the median of the last
    ``history_days`` complete days is the baseline, once ``history_min_days`` exist.
    """
    days = complete_days(data)
    out: list[Anomaly] = []
    first_day = data.local_day(data.since)
    floor = cfg.spike_min_kwh * MICRO
    for day in sorted(days):
        if day < first_day:
            continue
        history = [days[d] for d in range(day - cfg.history_days, day) if d in days]
        if len(history) < cfg.history_min_days:
            continue
        baseline = median(history)
        energy = days[day]
        kind = None
        if baseline > floor and energy > cfg.high_usage_ratio * baseline:
            kind = "high_usage"
        elif baseline > floor and energy < cfg.low_usage_ratio * baseline:
            kind = "low_usage"
        if kind is not None:
            start = data.day_start(day)
            out.append(data.anomaly(
                kind, start, start + DAY, Severity.WARNING,
                {"channel": ENERGY, "day_kwh": _kwh(energy), "baseline_kwh": _kwh(int(baseline)),
                 "ratio": round(energy / baseline, 4)},
                subject=ENERGY,
            ))  # fmt: skip
    return out


@rule("zero_consumption")
def zero_consumption(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Actual zeros for at least ``zero_hours`` while the supply is on (零度户, NEM12 68)."""
    cols = data.intervals.get(ENERGY)
    if cols is None or not cols.ts:
        return []
    if cols.value.count(0) * data.step(ENERGY) < cfg.zero_hours * 3600:
        return []  # not enough zeros in the whole window
    flags = [q == _ACTUAL and v == 0 for q, v in zip(cols.quality, cols.value, strict=True)]
    volts = [data.samples[c] for c in ("32.7.0", "52.7.0", "72.7.0") if c in data.samples]
    live = cfg.phase_break_ratio * data.facts.un_v * data.facts.pt * MICRO
    out: list[Anomaly] = []
    for first, last in runs(flags):
        start, end = cols.ts[first], cols.ts[last] + cols.duration[last]
        if end - start < cfg.zero_hours * 3600 or end <= data.since:
            continue
        energised: bool | None = None
        for series in volts:
            inside = [v for t, v in zip(series.ts, series.value, strict=True) if start <= t < end]
            if inside:
                energised = bool(energised) or any(v >= live for v in inside)
        if energised is False:
            continue  # de-energised: zero is right
        evidence: dict[str, Any] = {"channel": ENERGY, "hours": (end - start) / 3600,
                                    "energised": "by voltage" if energised else "no outage seen"}
        out.append(data.anomaly("zero_consumption", start, end, Severity.WARNING, evidence,
                                subject=ENERGY))  # fmt: skip
    return out


@rule("sum_check")
def sum_check(data: MeterData, cfg: VeeSettings) -> list[Anomaly]:
    """Per local day, the latest intervals must add up to the register delta × multiplier.

    Oracle MDM's Sum Check; tolerance ``sum_tolerance_kwh`` (one register digit)
    times the multiplier plus ``sum_tolerance_ratio`` of the delta.
    """
    reads = data.registers.get(ENERGY)
    cols = data.intervals.get(ENERGY)
    if reads is None or cols is None or not cols.ts:
        return []
    step = data.step(ENERGY)
    at_day: dict[int, int] = {}
    for day, _a, _b in data.day_slices(ENERGY):
        for d0 in (data.day_start(day), data.day_start(day + 1)):
            i = bisect_left(reads.ts, d0)  # the first read at or after midnight
            if i < len(reads.ts) and reads.ts[i] - reads.ts[i] % step == d0:
                at_day.setdefault(d0, reads.value[i])
    cells = data.versions.get(ENERGY, {})
    slices = {data.day_start(d): (a, b) for d, a, b in data.day_slices(ENERGY)}
    index: dict[int, int] | None = None
    mult = data.facts.ct * data.facts.pt
    out: list[Anomaly] = []
    for d0 in sorted(at_day):
        d1 = d0 + DAY
        if d1 not in at_day or d1 <= data.since or at_day[d1] < at_day[d0]:
            continue
        total, known = 0, True
        a, b = slices.get(d0, (0, 0))
        if b - a == DAY // step and cols.ts[a] == d0 and not (
            cells and any(t in cells for t in cols.ts[a:b])
        ):
            chunk = cols.value[a:b]
            known = None not in chunk
            total = sum(chunk) if known else 0  # type: ignore[arg-type]
        else:
            if index is None:
                index = {ts: i for i, ts in enumerate(cols.ts)}
            total, known, t = 0, True, d0
            while t < d1:  # a gap span counts once for every slot it covers
                cell = cells.get(t)
                at = index.get(t)
                got = cell.value if cell is not None else (
                    cols.value[at] if at is not None else None
                )  # fmt: skip
                t += cell.duration if cell is not None else step
                if got is None or t > d1:
                    known = False
                    break
                total += got
        if not known:
            continue
        expected = (at_day[d1] - at_day[d0]) * mult
        tolerance = cfg.sum_tolerance_kwh * MICRO * mult + cfg.sum_tolerance_ratio * expected
        if abs(total - expected) > tolerance:
            out.append(data.anomaly(
                "sum_check", d0, d1, Severity.WARNING,
                {"channel": ENERGY, "intervals_kwh": _kwh(total),
                 "register_delta_kwh": _kwh(int(expected))}, subject=ENERGY,
            ))  # fmt: skip
    return out
