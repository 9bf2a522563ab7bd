"""The billing upkeep of ``amigate run``: each step runs even when another one fails."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from amigate.billing.upkeep import run_upkeep
from amigate.config import load_settings
from amigate.storage import Store
from amigate.storage.feed_queries import read_changes
from tests.api.conftest import add_meter, add_series

#: A closed local day (Asia/Shanghai, the default site timezone) of 96 intervals.
DAY = datetime(2026, 3, 1, tzinfo=UTC) - timedelta(hours=8)


def _run(
    store: Store, now: datetime, retention: timedelta = timedelta(days=35)
) -> tuple[int, int, list[str], list[str]]:
    """Run the upkeep; the day-total rows built (two meters' day series with them, when any
    are), the feed entries pruned, the steps done and failed."""
    settings = load_settings(None)
    report = run_upkeep(store, settings.tou.classifier(settings.timezone), interval_s=900,
                        days=7, retention=retention, now=now)  # fmt: skip
    assert report.series == (2 if report.rows else 0)
    return report.rows, report.pruned, report.done, report.failed


def _days_and_sealed_feed(store: Store) -> None:
    """A closed day of two meters, whose two change-feed entries billing has read."""
    for address in ("000000000001", "000000000002"):
        add_series(store, add_meter(store, address), DAY, [Decimal("0.25")] * 96)
    assert len(read_changes(store.engine, None, 100)) == 2  # read: sealed, so prunable


def test_a_failing_step_leaves_the_others_running(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The change feed cannot be pruned (its table is gone): the day totals are still
    built, and the failure is logged and reported under its step."""
    _days_and_sealed_feed(sqlite_store)
    with sqlite_store.engine.begin() as conn:
        conn.execute(text("DROP TABLE changes"))
    with caplog.at_level(logging.WARNING, logger="amigate.service"):
        rows, pruned, done, failed = _run(sqlite_store, DAY + timedelta(days=2))
    assert (rows, pruned) == (8, 0)  # 2 meters x 4 tariff periods
    assert (done, failed) == (["day_totals", "chunk_order"], ["feed_prune"])
    assert any(r.getMessage().startswith("billing upkeep: feed_prune failed:")
               and "the other steps go on" in r.getMessage() for r in caplog.records)  # fmt: skip


def test_a_failing_day_totals_build_does_not_keep_the_feed_from_being_pruned(
    sqlite_store: Store,
) -> None:
    _days_and_sealed_feed(sqlite_store)
    with sqlite_store.engine.begin() as conn:
        conn.execute(text("DROP TABLE day_totals"))
    rows, pruned, done, failed = _run(sqlite_store, datetime.now(UTC) + timedelta(days=36))
    # The older entry is deleted; the newer stays as the mark of what was pruned.
    assert (rows, pruned, failed) == (0, 1, ["day_totals"])
    assert done == ["feed_prune", "chunk_order"]


def test_every_step_succeeds_on_a_sound_database(sqlite_store: Store) -> None:
    """Each step runs and is reported done; without a retention the feed is not pruned."""
    _days_and_sealed_feed(sqlite_store)
    assert _run(sqlite_store, DAY + timedelta(days=2)) == (
        8, 0, ["day_totals", "feed_prune", "chunk_order"], [],
    )  # fmt: skip
    forever = _run(sqlite_store, datetime.now(UTC) + timedelta(days=36), timedelta(0))
    assert forever == (0, 0, ["day_totals", "chunk_order"], [])
