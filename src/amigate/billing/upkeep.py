"""Billing upkeep of ``amigate run``: three independent steps, each run (and counted)
even when another one fails.

* ``day_totals``: add up the closed days per tariff period and keep their day series
  (``billing.totals``);
* ``feed_prune``: delete change-feed entries older than the retention;
* ``chunk_order``: on TimescaleDB, rewrite a chunk of intervals closed a day ago in
  meter order (``storage.chunk_order``).

A chunk that cannot be rewritten must not keep the day totals from being built, nor a
failing build keep the change feed from being pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from amigate.billing.totals import build
from amigate.errors import AmigateError
from amigate.storage import Store
from amigate.storage.chunk_order import order_closed_chunks
from amigate.storage.feed_queries import prune_changes
from amigate.tou import TouClassifier

__all__ = ["UpkeepReport", "run_upkeep"]

_LOG = logging.getLogger("amigate.service")


@dataclass
class UpkeepReport:
    """What one upkeep run did."""

    rows: int = 0  # day-total rows built
    series: int = 0  # day-series rows built
    pruned: int = 0  # change-feed entries deleted
    chunks: int = 0  # chunks rewritten in meter order
    done: list[str] = field(default_factory=list)  # the steps that ran without error
    failed: list[str] = field(default_factory=list)  # the steps that failed


def run_upkeep(
    store: Store, classifier: TouClassifier, *, interval_s: int, days: int,
    retention: timedelta, now: datetime,
) -> UpkeepReport:  # fmt: skip
    """Run every step once (pruning only with a retention); a failed step is logged and
    reported, and the next one runs.

    Args:
        store: the service's store.
        classifier: the time-of-use schedule the day totals are built for.
        interval_s: the interval length.
        days: closed days the day totals look back.
        retention: age of the change-feed entries pruned (zero: none are).
        now: the service clock's time.
    """
    report = UpkeepReport()

    def step(name: str, call: Callable[[], int]) -> int:
        try:
            result = call()
        except AmigateError as exc:
            _LOG.warning("billing upkeep: %s failed: %s; the other steps go on", name, exc)
        except Exception:  # a bug: the other steps still run
            _LOG.exception("billing upkeep: %s failed; the other steps go on", name)
        else:
            report.done.append(name)
            return result
        report.failed.append(name)
        return 0

    def totals() -> int:
        built = build(store, classifier, interval_s=interval_s, days=days, now=now)
        report.series = built.series
        return built.totals

    report.rows = step("day_totals", totals)
    if retention:
        report.pruned = step("feed_prune", lambda: prune_changes(store.engine, now - retention))
        if report.pruned:
            _LOG.info("change feed: pruned %d entr(ies) older than %d days",
                      report.pruned, retention.days)  # fmt: skip
    report.chunks = step("chunk_order", lambda: order_closed_chunks(
        store.engine, ended_before=now - timedelta(days=1),
    ))  # fmt: skip
    return report
