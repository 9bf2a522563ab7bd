"""The per-key rate limit shared by API processes through a mapped table."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator

import pytest

from amigate.api.rate_buckets import RateTable, SharedRateLimiter


@pytest.fixture
def table() -> Iterator[RateTable]:
    made = RateTable()
    try:
        yield made
    finally:
        made.close()


def test_limiters_on_one_table_share_each_keys_bucket(table: RateTable) -> None:
    """Two limiters (as two API processes) draw on one bucket per key: the burst once in
    all, then a token per 1 / rate seconds; another key has its own bucket."""
    one, two = SharedRateLimiter(table, 2.0, 3), SharedRateLimiter(table, 2.0, 3)
    try:
        assert [one.take("k", 100.0), two.take("k", 100.0), one.take("k", 100.0)] == [0, 0, 0]
        assert two.take("k", 100.0) == pytest.approx(0.5)  # empty: one token in 0.5 s
        assert one.take("other", 100.0) == 0
        assert one.take("k", 100.5) == 0 and two.take("k", 100.5) > 0  # refilled: one
        assert two.take("k", 200.0) == 0  # refilled up to the burst, no further
        assert [one.take("k", 200.0) for _ in range(3)] == [0, 0, pytest.approx(0.5)]
    finally:
        one.close()
        two.close()


def test_a_full_table_hands_the_least_recent_slot_to_a_new_key() -> None:
    """With more keys than slots, a new key takes over the slot used longest ago and
    starts with a full bucket; the keys in use keep theirs."""
    table = RateTable(slots=4)
    limiter = SharedRateLimiter(table, 1.0, 1)
    try:
        for n, key in enumerate("abcd"):
            assert limiter.take(key, 10.0 + n) == 0  # every slot holds an empty bucket
        assert limiter.take("e", 20.0) == 0  # took over "a"'s slot (the least recent)
        assert limiter.take("d", 13.5) > 0  # still empty: its slot was kept
        assert limiter.take("e", 20.0) > 0
    finally:
        limiter.close()
        table.close()


def _take_many(
    table: RateTable, count: int, start: threading.Barrier, allowed: multiprocessing.Queue[int]
) -> None:
    limiter = SharedRateLimiter(table, 1e-9, 15_000)  # no refill while this runs
    start.wait()
    allowed.put(sum(limiter.take("shared") == 0 for _ in range(count)))
    limiter.close()


def test_processes_taking_at_once_lose_no_update(table: RateTable) -> None:
    """Three spawned processes, each handed the table, take 10,000 tokens each from one
    bucket of 15,000 at the same time: the lock on the table lets exactly 15,000
    through (without it, updates overwrite each other or are read half written, and
    the count is off)."""
    context = multiprocessing.get_context("spawn")
    allowed: multiprocessing.Queue[int] = context.Queue()
    start = context.Barrier(3)
    workers = [context.Process(target=_take_many, args=(table, 10_000, start, allowed))
               for _ in range(3)]  # fmt: skip
    for w in workers:
        w.start()
    counts = [allowed.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(10)
    assert sum(counts) == 15_000, counts
