"""Hand-built JSON for the largest responses (interval series, billing determinants): the
same documents the pydantic models describe, written without building model objects.

A meter-month is 2,880 intervals; as models it cost 15 µs each, most of a request. A
determinant is seven models (its reads and time-of-use periods), about a fifth of a
1,000-meter batch. The tests compare these documents with the models' own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain, repeat
from typing import NamedTuple

from pydantic_core import to_json

from amigate.api.v1.schemas import exact
from amigate.billing.determinants import BoundaryRead, Determinant
from amigate.domain import Quality, Source
from amigate.storage.api_queries import SeriesRow
from amigate.storage.plain_series import PlainColumns, run_starts

_ISO: dict[datetime, str] = {}
_QUALITY = {int(q): q.name.lower() for q in Quality}
_SOURCE = {int(s): s.name.lower() for s in Source}
_SCALE = 1_000_000


def iso(when: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as pydantic writes it (memoised: series share times)."""
    found = _ISO.get(when)
    if found is None:
        if len(_ISO) > 50_000:
            _ISO.clear()
        found = _ISO[when] = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return found


def micro(value: int) -> str:
    """Micro-units as the exact decimal string ``energy()`` gives (six decimals)."""
    whole, part = divmod(-value if value < 0 else value, _SCALE)
    return f"{'-' if value < 0 else ''}{whole}.{part:06d}"


def _text(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def interval(row: SeriesRow) -> str:
    """One ``IntervalOut`` document."""
    start = iso(row.ts)
    end = iso(row.ts + timedelta(seconds=row.duration_s))
    value = "null" if row.value is None else f'"{micro(row.value)}"'
    return f'{{"start":"{start}","end":"{end}","value":{value},{attributes(row)}'


def attributes(row: SeriesRow) -> str:
    """The text of an interval version from its quality to the end of its object: what
    ``IntervalOut`` and ``IntervalBlockOut`` share."""
    head = (f'"quality":"{_QUALITY[row.quality]}","version":{row.version},'
            f'"source":"{_SOURCE[row.source]}",')  # fmt: skip
    if row.version == 1:
        return head + ('"method":null,"reason_codes":[],"created_by":null,"comment":null,'
                       '"recorded_at":null}')  # fmt: skip
    codes = json.dumps(row.reason_codes.split(",") if row.reason_codes else [])
    method = "null" if row.method is None else str(row.method)
    recorded = "null" if row.recorded_at is None else f'"{iso(row.recorded_at)}"'
    return head + (f'"method":{method},"reason_codes":{codes},'
                   f'"created_by":{_text(row.created_by)},"comment":{_text(row.comment)},'
                   f'"recorded_at":{recorded}}}')  # fmt: skip


def plain_attributes(quality: str, source: str) -> str:
    """:func:`attributes` of a version-1 interval, by its quality and source codes' text."""
    return _TAILS[quality, source][1:-1]


def values(texts: Iterable[str]) -> str:
    """Interval values as JSON, comma-separated, from their micro-units' text (``n``:
    none), as ``PlainColumns`` holds them."""
    return ",".join(map(_VALUES.__getitem__, texts))


class _Heads(dict[tuple[str, str], str]):
    """The text of a version-1 interval before its value, by (epoch start, duration_s)
    (shared by every meter's series)."""

    def __missing__(self, key: tuple[str, str]) -> str:
        if len(self) > 10_000:  # three months of 15-minute slots; about 2 MB
            self.clear()
        start = datetime.fromtimestamp(int(key[0]), UTC)
        end = start + timedelta(seconds=int(key[1]))
        found = self[key] = f'{{"start":"{iso(start)}","end":"{iso(end)}","value":'
        return found


class _Tails(dict[tuple[str, str], str]):
    """The text of a version-1 interval after its value, by (quality, source), with the
    comma that separates it from the next."""

    def __missing__(self, key: tuple[str, str]) -> str:
        found = self[key] = (
            f',"quality":"{_QUALITY[int(key[0])]}","version":1,'
            f'"source":"{_SOURCE[int(key[1])]}","method":null,"reason_codes":[],'
            '"created_by":null,"comment":null,"recorded_at":null},'
        )
        return found


class _Values(dict[str, str]):
    """A value's JSON text by its micro-units' text (``n``: none). Interval energies
    repeat: at DL/T 645's 0.01 kWh a household's intervals take a few hundred values."""

    def __missing__(self, key: str) -> str:
        if len(self) > 20_000:  # about 3 MB at most
            self.clear()
        found = self[key] = "null" if key == "n" else f'"{micro(int(key))}"'
        return found


class _Run(NamedTuple):
    starts: list[str]  # epoch seconds, as ``PlainColumns`` holds them
    heads: list[str]
    #: By tail: the run's text with a hole before each tail for its value (see
    #: :func:`_filled`).
    texts: dict[str, list[str | None]]


class _Runs(dict[tuple[str, int, str], _Run]):
    """The starts and heads of a regular run of intervals by (first start, count,
    duration): every meter's series of one period shares them."""

    def __missing__(self, key: tuple[str, int, str]) -> _Run:
        if len(self) >= 4:  # a month of 15-minute heads and starts is about 500 kB
            self.clear()
        starts = run_starts(*key)
        found = self[key] = _Run(starts, [_HEADS[start, key[2]] for start in starts], {})
        return found


_HEADS, _TAILS, _VALUES, _RUNS = _Heads(), _Tails(), _Values(), _Runs()


def plain_intervals(columns: PlainColumns) -> str:
    """The ``IntervalOut`` documents of version-1 intervals, comma-separated: the text
    :func:`interval` writes, put together from looked-up pieces in one join (the loops
    run in C).

    ``columns`` must be in start order, each start once (as ``plain_series`` gives
    them). A series read every interval (starts one duration apart, one duration, one
    quality and source) is the usual one: its text comes from :func:`regular_run`, so
    only its values are looked up (2,880 intervals: about 0.6 ms instead of 2.6).
    """
    count = len(columns.start)
    if not count:
        return ""
    run = regular_run(columns)
    quality, source = columns.quality[0], columns.source[0]
    alike = columns.quality.count(quality) == count and columns.source.count(source) == count
    if run is not None and alike:
        return _filled(run, _TAILS[quality, source], columns.value)
    heads: Iterable[str]
    if run is not None:
        heads = run.heads
    else:
        heads = map(_HEADS.__getitem__, zip(columns.start, columns.duration_s, strict=True))
    tails: Iterable[str]
    if alike:
        tails = repeat(_TAILS[quality, source], count)
    else:
        tails = map(_TAILS.__getitem__, zip(columns.quality, columns.source, strict=True))
    values = map(_VALUES.__getitem__, columns.value)
    return "".join(chain.from_iterable(zip(heads, values, tails, strict=True)))[:-1]


def _filled(run: _Run, tail: str, values: list[str]) -> str:
    """The documents of a run whose intervals share ``tail``: its text (each tail joined
    to the next head, made once a run and tail) with the values put in its holes by one
    slice assignment (a third less than looking up and joining three pieces an interval)."""
    text = run.texts.get(tail)
    if text is None:
        text = [None] * (2 * len(run.heads))
        text[1::2] = [tail + head for head in run.heads[1:]] + [tail[:-1]]
        run.texts[tail] = text
    parts = text[:]
    parts[0::2] = map(_VALUES.__getitem__, values)
    return run.heads[0] + "".join(parts)  # type: ignore[arg-type]  # every hole filled


def regular_run(columns: PlainColumns) -> _Run | None:
    """The run of ``columns`` when they start one duration apart, all of one duration.

    Comparing the starts with the run's (a loop in C, about 30 µs for a meter-month) is
    the proof: the first and last start alone cannot tell, as intervals that overlap
    (stored starts 0, 300, 1800 of 900 s) span the same time as a run."""
    count = len(columns.start)
    step = columns.duration_s[0] if count else ""
    if not count or columns.duration_s.count(step) != count:
        return None
    starts = columns.start
    if int(starts[-1]) - int(starts[0]) != (count - 1) * int(step):
        return None  # no run: none built and cached
    run = _RUNS[starts[0], count, step]
    return run if starts == run.starts else None


def page(items: list[str], next_cursor: str | None) -> bytes:
    """A ``Page`` document of already serialized items."""
    return page_of(",".join(items), next_cursor)


def page_of(items: str, next_cursor: str | None) -> bytes:
    """A ``Page`` document of already serialized, comma-separated items."""
    cursor = "null" if next_cursor is None else json.dumps(next_cursor)
    return f'{{"items":[{items}],"next_cursor":{cursor}}}'.encode()


class _Json(dict[object, str]):
    """JSON text of a value as pydantic writes it (times with their offset, floats in its
    notation, strings unescaped), memoised: a batch repeats its period, periods and reasons.

    Keys carry what equality ignores: equal aware times may have different offsets."""

    def __missing__(self, key: object) -> str:
        if len(self) > 10_000:
            self.clear()
        value = key[0] if isinstance(key, tuple) else key
        found = self[key] = to_json(value).decode()
        return found


_JSON = _Json()


def _time(when: datetime | None) -> str:
    return "null" if when is None else _JSON[when, when.utcoffset()]


def _read(read: BoundaryRead | None) -> str:
    if read is None:
        return "null"
    return f'{{"read_at":{_time(read.read_at)},"value":"{micro(read.value)}"}}'


def _exact(micro_units: Decimal | None) -> str:
    return "null" if micro_units is None else f'"{exact(micro_units.scaleb(-6))}"'


def determinant(d: Determinant, channel: str, multiplier: str | None) -> str:
    """One ``DeterminantOut`` document (``multiplier`` as the API writes it)."""
    j = _JSON
    tou = ",".join(f'{{"period":{j[name]},"energy":"{micro(t.energy)}","intervals":{t.intervals}}}'
                   for name, t in d.tou.items())  # fmt: skip
    return (
        f'{{"meter_id":{d.meter_id},"channel":{j[channel]},"start":{_time(d.start)},'
        f'"end":{_time(d.end)},"billable":{"false" if d.reasons else "true"},'
        f'"reasons":[{",".join(j[r] for r in d.reasons)}],"start_read":{_read(d.start_read)},'
        f'"end_read":{_read(d.end_read)},'
        f'"multiplier":{"null" if multiplier is None else j[multiplier]},'
        f'"consumption":"{micro(d.consumption)}",'
        f'"register_delta":{_exact(d.register_delta)},'
        f'"difference":{_exact(d.difference)},'
        f'"tou":[{tou}],'
        f'"max_demand":{_exact(d.max_demand)},'
        f'"max_demand_at":{_time(d.max_demand_at)},'
        f'"intervals":{d.intervals},"missing_intervals":{d.missing_intervals},'
        f'"estimated_intervals":{d.estimated_intervals},'
        f'"estimated_energy":"{micro(d.estimated_energy)}",'
        f'"completeness":{to_json(round(d.completeness, 6)).decode()},'
        f'"open_anomalies":[{",".join(map(str, d.anomaly_ids))}]}}'
    )  # fmt: skip
