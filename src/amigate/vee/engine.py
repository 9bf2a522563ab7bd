"""The validation run: load a window in bulk, run the rules, estimate, compute line loss, store.

Meters are processed in chunks of whole transformer areas. Each chunk's data
(the window plus ``history_days`` before it) is read in one query per table;
every registered rule runs over each meter; closed gaps are estimated; the
estimates take part in the area's line loss; then the anomalies go through
the deduplicating anomaly store and the estimates are stored as versions.
Running twice gives the same flags: anomalies merge into their stored records,
and estimated gaps are not estimated again.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache, partial

from amigate.config import DEFAULT_VEE_SETTINGS, VeeSettings
from amigate.domain import Anomaly, Interval, Meter
from amigate.errors import AmigateError
from amigate.meter_models import MeterModel, load_models
from amigate.meter_models.spec import PointKind
from amigate.storage import Store
from amigate.storage.anomaly_store import add_anomalies, list_anomalies
from amigate.storage.ingest import utcnow
from amigate.storage.vee_queries import (
    MeterProfile,
    PointColumns,
    VersionCell,
    WindowData,
    load_samples,
    load_window,
    meter_profiles,
    record_run,
)
from amigate.vee import rules_intervals, rules_phases, rules_registers  # noqa: F401 (registering)
from amigate.vee.context import LazySamples, MeterData, MeterFacts, facts_for
from amigate.vee.estimation import estimate_meter
from amigate.vee.line_loss import LossDay, area_line_loss
from amigate.vee.registry import RULES

__all__ = ["DAILY_RULES", "INCREMENTAL_HISTORY", "VeeReport", "validate", "validate_since"]

log = logging.getLogger(__name__)
#: Progress callback: (meters done, meters in total).
Progress = Callable[[int, int], None]


@dataclass
class VeeReport:
    """What a validation run did.

    Attributes:
        run_id: the stored run record.
        meters: meters validated.
        intervals: intervals in the window that were validated.
        anomalies: anomalies raised, by kind (before merging into stored records).
        versions: interval versions written (estimates).
        loss_days: line loss per area and day.
        seconds: wall-clock time of the run.
    """

    run_id: int | None = None
    meters: int = 0
    intervals: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    loss_days: list[LossDay] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def intervals_per_s(self) -> float:
        """Validation throughput."""
        return self.intervals / self.seconds if self.seconds > 0 else 0.0


#: The register channels the rules read (import total and tariffs, export total).
REGISTER_CHANNELS = frozenset({*rules_registers.TOTALS, *rules_registers.TARIFFS})
#: Rules that judge whole days against weeks of history: the daily batch runs them.
DAILY_RULES = frozenset({"spike", "usage_vs_history", "zero_consumption"})
#: History the incremental hook reads before ``since`` (runs of reads, samples, gaps).
INCREMENTAL_HISTORY = timedelta(days=1)


def validate_since(
    store: Store,
    since: datetime,
    meters: Sequence[int] | None = None,
    settings: VeeSettings | None = None,
) -> VeeReport:
    """Validate what arrived since ``since`` (the hook the service calls after each flush).

    Cheap enough to run every interval: it reads one day before ``since``, runs
    every rule but the day-against-history ones (:data:`DAILY_RULES`), and
    estimates only the gaps short enough for interpolation. Like-day estimates,
    the daily rules and line loss come from the daily batch
    (``amigate vee run --since YESTERDAY``, or :func:`validate`), which gives
    the same flags: anomalies from both merge into the same records.

    Args:
        store: the store.
        since: validate intervals, reads and samples from this time on (aware).
        meters: only these meter ids (default: all).
        settings: thresholds (default: the documented defaults).

    Returns:
        The run's report.
    """
    return validate(
        store, since=since, meters=meters, settings=settings,
        rules=[r for r in RULES if r not in DAILY_RULES], line_loss=False,
        history=INCREMENTAL_HISTORY, long_gaps=False,
    )  # fmt: skip


def validate(
    store: Store,
    *,
    since: datetime,
    until: datetime | None = None,
    meters: Sequence[int] | None = None,
    settings: VeeSettings | None = None,
    rules: Iterable[str] | None = None,
    estimate: bool = True,
    line_loss: bool = True,
    models: dict[str, MeterModel] | None = None,
    progress: Progress | None = None,
    chunk_meters: int = 400,
    history: timedelta | None = None,
    long_gaps: bool = True,
) -> VeeReport:
    """Run validation over ``[since, until)``.

    Args:
        store: the store.
        since: start of the window (aware).
        until: end of the window (default: now).
        meters: only these meter ids (whole areas are still read for line loss).
        settings: thresholds (default: the documented defaults).
        rules: run only these rules (default: every registered rule).
        estimate: estimate closed gaps.
        line_loss: compute transformer-area line loss and theft suspicion.
        models: meter models by id (default: the shipped ones).
        progress: called after each chunk with (meters done, meters in total).
        chunk_meters: meters read per chunk (whole areas are kept together).
        history: how much to read before ``since`` (default: ``history_days`` + 1 day).
        long_gaps: also estimate gaps beyond the interpolation limit (like-day).

    Returns:
        The run's report.

    Raises:
        ValueError: an unknown rule name.
    """
    started, clock = utcnow(), time.perf_counter()
    cfg = settings or DEFAULT_VEE_SETTINGS
    until = until or started
    chosen = list(RULES) if rules is None else list(rules)
    unknown = [r for r in chosen if r not in RULES]
    if unknown:
        raise ValueError(f"unknown validation rule(s): {', '.join(unknown)}")
    everyone = store.meters()
    wanted = set(meters) if meters is not None else None
    selected = [m for m in everyone if wanted is None or m.id in wanted]
    if models is None:
        try:
            models = load_models()
        except AmigateError:  # pragma: no cover - shipped models are validated by tests
            models = {}
    profiles = meter_profiles(store.engine)
    events: dict[int, list[Anomaly]] = {}
    for event in list_anomalies(store.engine, kind="meter_exchange"):
        if event.meter_id is not None:
            events.setdefault(event.meter_id, []).append(event)
    report = VeeReport(meters=len(selected))
    first = since - (history if history is not None else timedelta(days=cfg.history_days + 1))
    done = 0
    for chunk in _chunks(everyone, selected, chunk_meters):
        ids = [m.id for m in chunk if m.id is not None]
        loaded = load_window(store.engine, ids, first, until, samples=False,
                             registers=REGISTER_CHANNELS)  # fmt: skip
        window = _by_meter(loaded)
        stats: dict[int, dict[str, tuple[int, int, int]]] = {}
        for (meter_id, channel), stat in loaded.sample_stats.items():
            stats.setdefault(meter_id, {})[channel] = stat
        data = {
            m.id: _meter_data(m, models, profiles, window.get(m.id, {}), events, since, until,
                              LazySamples(stats.get(m.id, {}),
                                          partial(load_samples, store.engine, m.id, first, until)))
            for m in chunk if m.id is not None
        }  # fmt: skip
        findings: list[Anomaly] = []
        estimates: list[Interval] = []
        for meter in chunk:
            if meter.id is None or (wanted is not None and meter.id not in wanted):
                continue
            md = data[meter.id]
            report.intervals += sum(
                len(c.ts) - bisect_left(c.ts, md.since) for c in md.intervals.values()
            )
            for name in chosen:
                findings += RULES[name](md, cfg)
            if estimate:
                new = estimate_meter(md, cfg, long_gaps=long_gaps)
                _merge_estimates(md, new)
                estimates += new
        if line_loss:
            for area, members in _areas(chunk, data).items():
                days, found = area_line_loss(area, members, cfg)
                report.loss_days += days
                findings += found
        if estimates:
            store.ingest_intervals(estimates)
            report.versions += len(estimates)
        add_anomalies(store.engine, findings, join_gap=timedelta(hours=cfg.join_gap_hours))
        for a in findings:
            report.anomalies[a.kind] = report.anomalies.get(a.kind, 0) + 1
        done += sum(1 for m in chunk if wanted is None or m.id in wanted)
        if progress is not None:
            progress(done, len(selected))
    report.seconds = time.perf_counter() - clock
    report.run_id = record_run(
        store.engine, started_at=started, since=since, until=until,
        meters=None if meters is None else list(meters), parameters=cfg.model_dump(),
        intervals=report.intervals, anomalies=sum(report.anomalies.values()),
        versions=report.versions,
    )  # fmt: skip
    log.info("validated %d intervals of %d meters in %.2f s: %d anomalies, %d estimates",
             report.intervals, report.meters, report.seconds, sum(report.anomalies.values()),
             report.versions)  # fmt: skip
    return report


def _chunks(everyone: list[Meter], selected: list[Meter], size: int) -> Iterable[list[Meter]]:
    """Chunks of whole areas holding the selected meters (area peers ride along)."""
    areas: dict[str, list[Meter]] = {}
    for m in everyone:
        if m.transformer_area is not None:
            areas.setdefault(m.transformer_area, []).append(m)
    chunk: list[Meter] = []
    seen: set[int | None] = set()
    for m in selected:
        if m.id in seen:
            continue
        group = areas.get(m.transformer_area, [m]) if m.transformer_area else [m]
        seen.update(g.id for g in group)
        chunk += group
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _areas(chunk: list[Meter], data: dict[int, MeterData]) -> dict[str, list[MeterData]]:
    out: dict[str, list[MeterData]] = {}
    for m in chunk:
        if m.transformer_area is not None and m.id in data:
            out.setdefault(m.transformer_area, []).append(data[m.id])
    return out


@lru_cache(maxsize=256)
def _capacity(model: MeterModel | None) -> Decimal | None:
    if model is None:
        return None
    from amigate.poller import register_capacity

    for point in model.by_kind(PointKind.ENERGY):
        if point.channel == "1.8.0":
            return register_capacity(model, point)
    return None


_Parts = dict[str, dict[str, object]]


def _by_meter(window: WindowData) -> dict[int, _Parts]:
    out: dict[int, _Parts] = {}
    for name, table in (("intervals", window.intervals), ("versions", window.versions),
                        ("registers", window.registers)):
        for (meter_id, channel), value in table.items():
            out.setdefault(meter_id, {}).setdefault(name, {})[channel] = value
    for meter_id, checks in window.clock.items():
        out.setdefault(meter_id, {})["clock"] = {"": checks}
    return out  # fmt: skip


def _meter_data(
    meter: Meter,
    models: dict[str, MeterModel],
    profiles: dict[int, MeterProfile],
    parts: _Parts,
    events: dict[int, list[Anomaly]],
    since: datetime,
    until: datetime,
    samples: LazySamples,
) -> MeterData:
    assert meter.id is not None
    ident = meter.id
    model = models.get(meter.model)
    facts: MeterFacts = facts_for(meter, model, profiles.get(ident), at=since,
                                  capacity=_capacity(model))  # fmt: skip
    clock = parts.get("clock", {}).get("")
    return MeterData(
        facts=facts, since=int(since.timestamp()), until=int(until.timestamp()),
        intervals=parts.get("intervals", {}),  # type: ignore[arg-type]
        versions=parts.get("versions", {}),  # type: ignore[arg-type]
        registers=parts.get("registers", {}),  # type: ignore[arg-type]
        samples=samples,
        clock=clock if isinstance(clock, PointColumns) else None, events=events.get(ident, []),
    )  # fmt: skip


def _merge_estimates(data: MeterData, estimates: list[Interval]) -> None:
    """Let the line loss see this run's estimates (the latest view after storing them)."""
    if estimates:
        data.forget()
    for iv in estimates:
        cells = data.versions.setdefault(iv.channel, {})
        value = None if iv.value is None else int(iv.value * 1_000_000)
        cells[int(iv.start.timestamp())] = VersionCell(
            iv.version, int(iv.duration.total_seconds()), value, int(iv.quality), iv.method,
            ",".join(iv.reason_codes), iv.created_by,
        )
