"""The day totals billing reads (``amigate.storage.day_totals``), for the configured schedule,
and the day series interval series read.

Day totals exist only where local days have a fixed length: in a timezone whose
UTC offset does not change over the range (no daylight saving time, such as
Asia/Shanghai). Elsewhere determinants are summed from the intervals, and day series
are kept for UTC days.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from amigate.storage import Store, day_totals
from amigate.tou import TouClassifier

_LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def fixed_offset(zone: ZoneInfo, start: datetime, end: datetime) -> int | None:
    """The UTC offset (seconds) of ``zone`` if it stays the same over the period, else None
    (memoised: billing asks for the same periods again and again)."""
    offsets = set()
    at = start
    while True:
        offset = at.astimezone(zone).utcoffset()
        offsets.add(None if offset is None else int(offset.total_seconds()))
        if at >= end or len(offsets) > 1:
            break
        at = min(end, at + timedelta(hours=6))
    only = offsets.pop() if len(offsets) == 1 else None
    return only


def period_ranges(classifier: TouClassifier) -> list[tuple[int, int, int]]:
    """The local day as ``(first minute, end minute, period index)`` runs."""
    index = {name: i for i, name in enumerate(classifier.names)}
    return [(lo, hi, index[name]) for lo, hi, name in classifier.ranges()]


def build(
    store: Store, classifier: TouClassifier, *, interval_s: int, days: int, now: datetime
) -> day_totals.Built:
    """Build the missing day totals and day series of the last ``days`` closed local days.

    In a timezone whose UTC offset changes, local days have no fixed length: no day
    totals are built, and day series are built for UTC days (a series over local days
    reads the hours at either end from the intervals).

    Returns:
        The rows stored: day totals (none when the timezone has no fixed offset) and day
        series.
    """
    since = now - timedelta(days=days + 1)
    offset = fixed_offset(classifier.zone, since, now)
    if offset is None:
        _LOG.debug("day totals: %s changes its UTC offset; determinants use the intervals",
                   classifier.zone.key)  # fmt: skip
    return day_totals.build(
        store.engine, ranges=period_ranges(classifier), offset_s=offset or 0,
        interval_s=interval_s, since=since, now=now, totals=offset is not None,
    )  # fmt: skip
