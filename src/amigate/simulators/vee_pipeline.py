"""Run a validation scenario through the pipeline and score the anomalies against its truth.

Collection side: the generated register reads go through the same
normalization as collected ones (:func:`amigate.normalize.normalize_reads`,
with meter identities for exchanges and the register capacity for rollovers)
and are stored with the samples, clock checks and collection anomalies. Then
validation runs over the evaluation window, and :func:`score` compares the
stored anomalies with the ground truth, per anomaly kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from amigate.normalize import ChannelPolicy, normalize_reads
from amigate.simulators.vee_generate import CAPACITY, plan, simulate_area
from amigate.simulators.vee_scenario import FAULT_KINDS, Truth, TruthKey, VeeScenario, Window
from amigate.storage import Store
from amigate.storage.anomaly_store import list_anomalies

__all__ = ["KindScore", "Loaded", "Scores", "load_scenario", "score"]

#: Highest plausible power over rated: the collection service's margin.
_POWER_MARGIN = Decimal("1.2")
#: An anomaly counts for a fault when it overlaps the fault's window widened by this.
_MARGIN = timedelta(days=1)


@dataclass
class Loaded:
    """A scenario stored: its truth with meter ids, and how much was stored."""

    scenario: VeeScenario
    truth: Truth
    ids: dict[str, int]
    intervals: int = 0
    reads: int = 0
    samples: int = 0


def load_scenario(store: Store, scenario: VeeScenario) -> Loaded:
    """Generate a scenario and store it as collection would.

    Args:
        store: an empty store (or one without these meters).
        scenario: the scenario.

    Returns:
        What was stored, with the ground truth.
    """
    areas = plan(scenario)
    meters = [m.meter for _area, total, customers in areas for m in (total, *customers)]
    ids = {m.address: m.id for m in store.register_meters(meters) if m.id is not None}
    loaded = Loaded(scenario, _truth(scenario, areas), ids)
    interval = timedelta(minutes=scenario.interval_minutes)
    for area, total, customers in areas:
        plans = [*customers, total]
        for p, series in zip(plans, simulate_area(scenario, area, total, customers, ids),
                             strict=True):  # fmt: skip
            voltage, current = Decimal(220), Decimal(6 if p.phases == 3 else 60)
            policy = ChannelPolicy(
                multiplier=p.meter.multiplier, capacity=CAPACITY,
                max_kw=voltage * current * p.phases * _POWER_MARGIN / 1000,
            )  # fmt: skip
            outcome = normalize_reads(series.reads, interval=interval, policy=policy,
                                      identities=series.identities)  # fmt: skip
            store.ingest_register_reads(series.reads + series.daily)
            store.ingest_intervals(outcome.intervals)
            store.ingest_samples(series.samples)
            store.ingest_clock_checks(series.clock)
            store.add_anomalies(outcome.anomalies)
            loaded.intervals += sum(1 for iv in outcome.intervals if iv.version == 1)
            loaded.reads += len(series.reads) + len(series.daily)
            loaded.samples += len(series.samples)
    return loaded


def _truth(scenario: VeeScenario, areas: list) -> Truth:  # type: ignore[type-arg]
    truth = Truth()
    for area, total, customers in areas:
        faulty = False
        for i, p in enumerate(customers):
            for fault in p.faults:
                table = FAULT_KINDS[fault.kind]
                window = scenario.window(fault)
                meter, zone = ("meter", p.meter.address), ("area", area.name)
                for target, name, into in (
                    (meter, "meter", truth.expected), (zone, "area", truth.expected),
                    (meter, "meter_allowed", truth.allowed), (zone, "area_allowed", truth.allowed),
                ):  # fmt: skip
                    for kind in table[name]:
                        into.setdefault((target, kind), []).append(window)
                faulty = True
            if not p.faults:
                truth.clean_meters.add(customers[i].meter.address)
        truth.clean_meters.add(total.meter.address)
        if not faulty:
            truth.clean_areas.add(area.name)
    return truth


@dataclass
class KindScore:
    """Detections of one anomaly kind."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1 when nothing was raised."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1 when nothing was expected."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class Scores:
    """Precision and recall per kind and overall, and what was raised on clean meters."""

    kinds: dict[str, KindScore] = field(default_factory=dict)
    on_clean: list[str] = field(default_factory=list)
    consequences: list[str] = field(default_factory=list)

    @property
    def overall(self) -> KindScore:
        """All kinds together."""
        return KindScore(sum(k.tp for k in self.kinds.values()),
                         sum(k.fp for k in self.kinds.values()),
                         sum(k.fn for k in self.kinds.values()))  # fmt: skip


def score(store: Store, loaded: Loaded, *, margin: timedelta = _MARGIN) -> Scores:
    """Compare the stored anomalies touching the evaluation window with the truth.

    Each fault window of each expected (target, kind) is a true positive when a
    stored anomaly of that kind on that meter or area overlaps it (``margin``
    either side: daily rules flag whole days) and a false negative otherwise.
    An anomaly no fault explains is a false positive; one that is a known
    consequence of a fault (allowed, overlapping it) counts neither way.
    """
    since = loaded.scenario.eval_start
    by_id = {v: k for k, v in loaded.ids.items()}
    truth = loaded.truth
    scores = Scores()
    hits: set[tuple[TruthKey, int]] = set()
    for a in list_anomalies(store.engine):
        if (a.end or a.start) < since:
            continue
        target = ("meter", by_id[a.meter_id]) if a.meter_id is not None else (
            "area", str(a.transformer_area)
        )  # fmt: skip
        key = (target, a.kind)
        entry = scores.kinds.setdefault(a.kind, KindScore())
        span = (a.start - margin, (a.end or a.start) + margin)
        matched = [i for i, w in enumerate(truth.expected.get(key, ())) if _overlap(span, w)]
        if matched:
            hits.update((key, i) for i in matched)
        elif any(_overlap(span, w) for w in truth.allowed.get(key, ())):
            scores.consequences.append(f"{target[0]} {target[1]}: {a.kind}")
        else:
            entry.fp += 1
        if (target[0] == "meter" and target[1] in truth.clean_meters) or (
            target[0] == "area" and target[1] in truth.clean_areas
        ):
            scores.on_clean.append(f"{target[0]} {target[1]}: {a.kind}")
    for key, windows in truth.expected.items():
        entry = scores.kinds.setdefault(key[1], KindScore())
        for i in range(len(windows)):
            if (key, i) in hits:
                entry.tp += 1
            else:
                entry.fn += 1
    return scores


def _overlap(a: Window, b: Window) -> bool:
    return a[0] < b[1] and b[0] < a[1]
