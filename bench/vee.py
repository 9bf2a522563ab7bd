"""Validation (VEE) benchmark: quality against injected faults, and batch throughput.

1. Evaluation: the scenario ``simulators/vee-eval.toml`` (transformer areas with
   bypass theft, a reversed CT, a stopped register, voltage loss, clock drift,
   a spike, an outage, a meter exchange and a rollover on known meters at known
   times, plus clean meters and areas) is generated, normalized and stored as
   collection would, validated, and the stored anomalies are scored per kind:
   precision, recall, and anything raised on a clean meter or area.
2. Throughput: ``--intervals`` (default 1,000,000) clean intervals of
   single-phase meters, with their register reads and hourly U/I/P samples, are
   stored, then one batch validation run over all of them is timed
   (intervals/s, reading included).

    python bench/vee.py [--scenario FILE] [--intervals N] [--days N] [--rounds N]
                        [--skip-eval] [--skip-throughput]

Targets: precision and recall >= 0.95 for every kind, nothing on clean meters,
>= 200,000 intervals/s. The machine may be shared: the best of ``--rounds`` runs
is reported beside each run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from amigate.domain import Interval, Meter, Protocol, RegisterRead, Sample
from amigate.resources import data_path
from amigate.simulators.load_shape import LoadShape
from amigate.simulators.vee_pipeline import load_scenario, score
from amigate.simulators.vee_scenario import VeeScenario
from amigate.storage import Store, make_engine, upgrade
from amigate.vee import validate

_CENT = Decimal("0.01")


def evaluate(scenario_file: Path, workdir: Path) -> bool:
    """Run the evaluation scenario and print the table; True when every target is met."""
    scenario = VeeScenario.load(scenario_file)
    engine = make_engine(f"sqlite:///{workdir / 'eval.db'}")
    upgrade(engine)
    store = Store(engine)
    started = time.perf_counter()
    loaded = load_scenario(store, scenario)
    stored = time.perf_counter() - started
    report = validate(store, since=scenario.eval_start, until=scenario.end)
    scores = score(store, loaded)
    print(f"evaluation: {scenario_file.name}: {len(loaded.ids)} meters, {scenario.days} days "
          f"({scenario.eval_days} validated), {loaded.intervals:,} intervals, "
          f"{loaded.reads:,} register reads, {loaded.samples:,} samples")  # fmt: skip
    print(f"  generated and stored in {stored:.1f} s; validated in {report.seconds:.2f} s, "
          f"{report.versions} estimates written")  # fmt: skip
    print(f"  {'kind':<26} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>10} {'recall':>8}")
    ok = True
    for kind, k in sorted(scores.kinds.items()):
        print(f"  {kind:<26} {k.tp:>4} {k.fp:>4} {k.fn:>4} {k.precision:>10.2f} {k.recall:>8.2f}")
        ok &= k.precision >= 0.95 and k.recall >= 0.95
    total = scores.overall
    print(f"  {'overall':<26} {total.tp:>4} {total.fp:>4} {total.fn:>4} "
          f"{total.precision:>10.2f} {total.recall:>8.2f}")  # fmt: skip
    print(f"  anomalies on clean meters and areas: {len(scores.on_clean)}")
    print(
        f"  known consequences of a fault (not counted): {len(scores.consequences)} "
        f"({', '.join(sorted({c.split(': ')[1] for c in scores.consequences}))})"
    )
    for line in scores.on_clean:
        print(f"    {line}")
    engine.dispose()
    return ok and not scores.on_clean


def _fill(store: Store, meters: int, days: int) -> int:
    """Store clean single-phase meters: intervals, register reads, hourly samples."""
    start = datetime.fromisoformat("2026-03-02T00:00:00+08:00")
    stored = store.register_meters([
        Meter(address=f"9{m:011d}", protocol=Protocol.DLT645_2007,
              model="dlt645-2007-single-phase", bus="bench", transformer_area=f"T{m // 20}")
        for m in range(meters)
    ])  # fmt: skip
    step = timedelta(minutes=15)
    slots = days * 96
    total = 0
    for meter in stored:
        assert meter.id is not None
        shape = LoadShape(kind="residential", kw=Decimal(3), seed=meter.id)
        register = Decimal(1000 + meter.id)
        intervals, reads, samples = [], [], []
        for k in range(slots):
            at = start + k * step
            kw = shape.power_w(at + step / 2) / 1000
            energy = Decimal(repr(kw / 4)).quantize(_CENT)
            reads.append(RegisterRead(meter_id=meter.id, channel="1.8.0", read_at=at,
                                      value=register, collected_at=at))  # fmt: skip
            intervals.append(Interval(meter_id=meter.id, channel="1.8.0", start=at,
                                      end=at + step, value=energy))  # fmt: skip
            register += energy
            if k % 4 == 0:
                amps = round(kw * 1000 / 220 / 0.95, 3)
                samples += [
                    Sample(meter_id=meter.id, channel="32.7.0", at=at, value=Decimal(220)),
                    Sample(meter_id=meter.id, channel="31.7.0", at=at,
                           value=Decimal(repr(amps))),
                    Sample(meter_id=meter.id, channel="1.7.0", at=at,
                           value=Decimal(repr(round(kw, 3)))),
                ]  # fmt: skip
        store.ingest_intervals(intervals)
        store.ingest_register_reads(reads)
        store.ingest_samples(samples)
        total += len(intervals)
    return total


def throughput(intervals: int, days: int, rounds: int, workdir: Path) -> float:
    """Store ``intervals`` clean intervals and time batch validation over them."""
    meters = max(1, intervals // (days * 96))
    engine = make_engine(f"sqlite:///{workdir / 'throughput.db'}")
    upgrade(engine)
    store = Store(engine)
    started = time.perf_counter()
    total = _fill(store, meters, days)
    print(f"throughput: {meters} meters x {days} days = {total:,} intervals "
          f"(+ register reads, hourly U/I/P samples), stored in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    since = datetime.fromisoformat("2026-03-02T00:00:00+08:00")
    best = 0.0
    for r in range(rounds):
        gc.collect()
        cpu = time.process_time()
        report = validate(store, since=since, until=since + timedelta(days=days),
                          estimate=True, line_loss=True)  # fmt: skip
        cpu = time.process_time() - cpu
        best = max(best, report.intervals_per_s)
        print(
            f"  run {r + 1}: {report.intervals:,} intervals in {report.seconds:.2f} s = "
            f"{report.intervals_per_s:,.0f} intervals/s (CPU {cpu:.2f} s = "
            f"{report.intervals / cpu:,.0f}/s); {sum(report.anomalies.values())} anomalies"
        )
    print(f"  best: {best:,.0f} intervals/s wall clock (target 200,000); machine load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    engine.dispose()
    return best


def main() -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=data_path("simulators") / "vee-eval.toml")
    parser.add_argument("--intervals", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, SQLite backend")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_eval:
            ok &= evaluate(args.scenario, Path(tmp))
        if not args.skip_throughput:
            ok &= throughput(args.intervals, args.days, args.rounds, Path(tmp)) >= 200_000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
