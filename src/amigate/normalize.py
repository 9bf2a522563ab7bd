"""Register reads to closed intervals: exact, aligned, honest about gaps (pure, no I/O).

A cumulative register read is attributed to the interval boundary at or before
the time it was taken (reads are scheduled just after each boundary, so the
value stands for the register at that boundary). Two consecutive attributed
reads ``(b0, v0)`` and ``(b1, v1)`` give the energy of ``[b0, b1)``:
``(v1 - v0) × multiplier``, exact in ``Decimal``.

The rows produced keep two invariants billing relies on:

* every interval slot between the first and the last read of a series has
  exactly one version-1 row: ``ACTUAL`` when both of its boundaries were read,
  ``MISSING`` (value ``None``, never zero) otherwise;
* the energy across a gap is not lost: it is kept as one **span**, a version-2
  row at the first slot of the gap whose duration covers the whole gap
  (``duration > interval``) and whose value is the register delta. In the
  ``latest`` view the span supersedes the first missing slot and the others
  stay missing, so the sum of the latest values equals the register delta to
  the last digit.

A register that goes down is a rollover when the meter's register capacity is
known and the wrapped delta is plausible; otherwise it is an anomaly, the slots
are missing and the series restarts from the new value. A delta larger than
the meter can physically register (``max_kw`` × hours) is an anomaly too:
no negative and no huge interval is ever stored silently. A meter exchange (a
new identity on the same series) splits the series the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from amigate.domain import Anomaly, Interval, Quality, RegisterRead, Severity, Source, require_aware

__all__ = [
    "SPAN_REASON",
    "Anchor",
    "ChannelPolicy",
    "Outcome",
    "SeriesNormalizer",
    "floor_boundary",
    "latest",
    "normalize_reads",
    "sample_multiplier",
    "slots",
]

#: Reason code of a span row (the energy across a gap, kept in one row).
SPAN_REASON = "gap-span"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: With no plausibility limit, a decrease counts as a rollover only from this
#: close to the capacity to this close above zero.
_WRAP_BAND = Decimal("0.1")


def floor_boundary(when: datetime, interval: timedelta) -> datetime:
    """Return the interval boundary at or before ``when``, in UTC.

    Args:
        when: an aware time.
        interval: the interval length (divides a day).

    Returns:
        The boundary, UTC-aware.
    """
    require_aware("time", when)
    step = int(interval.total_seconds() * 1_000_000)
    since = (when - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=since - since % step)


def slots(start: datetime, end: datetime, interval: timedelta) -> Iterator[datetime]:
    """Yield the slot starts in ``[start, end)``, ``interval`` apart."""
    at = start
    while at < end:
        yield at
        at += interval


def sample_multiplier(unit: str, ct_ratio: Decimal, pt_ratio: Decimal) -> Decimal:
    """Return what an instantaneous value in ``unit`` is multiplied by to get primary values.

    Voltages scale with the PT ratio, currents with the CT ratio, powers with
    both; frequency, power factor and the rest are unchanged.
    """
    if unit == "V":
        return pt_ratio
    if unit == "A":
        return ct_ratio
    if unit in {"kW", "W", "kvar", "var", "kVA", "VA"}:
        return ct_ratio * pt_ratio
    return Decimal(1)


@dataclass(frozen=True, kw_only=True)
class ChannelPolicy:
    """How one cumulative register is turned into intervals.

    Attributes:
        multiplier: CT ratio × PT ratio (primary = register delta × multiplier).
        capacity: the register wraps to zero at this value (``1000000`` for a
            DL/T 645 ``XXXXXX.XX`` register); ``None`` when it never wraps.
        max_kw: the highest plausible average power in register units per hour
            (nameplate with a margin); ``None`` to accept any increase.
    """

    multiplier: Decimal = Decimal(1)
    capacity: Decimal | None = None
    max_kw: Decimal | None = None

    def limit(self, duration: timedelta) -> Decimal | None:
        """The largest plausible register increase over ``duration``."""
        if self.max_kw is None:
            return None
        return self.max_kw * Decimal(int(duration.total_seconds())) / Decimal(3600)


@dataclass(frozen=True, kw_only=True)
class Anchor:
    """The last read of a series: the register value attributed to a boundary.

    Attributes:
        slot: the boundary (UTC) the read stands for.
        value: the register value as read.
        identity: who read it (meter address and model): a change splits the series.
    """

    slot: datetime
    value: Decimal
    identity: str = ""


@dataclass(frozen=True)
class Outcome:
    """What one step of normalization produced."""

    intervals: tuple[Interval, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()

    def __add__(self, other: Outcome) -> Outcome:
        """Concatenate two outcomes."""
        return Outcome(self.intervals + other.intervals, self.anomalies + other.anomalies)


@dataclass
class SeriesNormalizer:
    """The interval state machine of one (meter, channel) series.

    Attributes:
        meter_id: the meter.
        channel: the channel code.
        interval: the interval length.
        policy: multiplier and plausibility limits.
        anchor: the last read (restored from storage after a restart).
        missing_until: slots before this boundary already have a version-1 row.
    """

    meter_id: int
    channel: str
    interval: timedelta
    policy: ChannelPolicy = field(default_factory=ChannelPolicy)
    anchor: Anchor | None = None
    missing_until: datetime | None = None

    def read(self, read: RegisterRead, *, identity: str = "") -> Outcome:
        """Take one register read.

        Args:
            read: the read; ``read_at`` decides the boundary it stands for.
            identity: who read it; a change from the anchor's identity is a meter exchange.

        Returns:
            The rows and anomalies it produces (nothing for the first read, or a
            read for a boundary already covered).
        """
        slot = floor_boundary(read.read_at, self.interval)
        new = Anchor(slot=slot, value=read.value, identity=identity)
        old = self.anchor
        if old is None:
            self.anchor = new
            return Outcome()
        if slot <= old.slot:
            return Outcome()  # same boundary again (a retry) or out of order: nothing new
        self.anchor = new
        if identity != old.identity:
            return self._broken(
                old, slot, "meter_exchange", Severity.INFO,
                {"from": old.identity, "to": identity, "last_value": str(old.value),
                 "first_value": str(read.value)},
            )  # fmt: skip
        delta = read.value - old.value
        duration = slot - old.slot
        limit = self.policy.limit(duration)
        anomalies: tuple[Anomaly, ...] = ()
        if delta < 0:
            wrapped = self._wrapped(old.value, read.value, limit)
            if wrapped is None:
                return self._broken(
                    old, slot, "register_decrease", Severity.WARNING,
                    {"previous": str(old.value), "value": str(read.value),
                     "capacity": None if self.policy.capacity is None
                     else str(self.policy.capacity)},
                )  # fmt: skip
            delta = wrapped
            anomalies = (
                self._anomaly(
                    "register_rollover", Severity.INFO, old.slot, slot,
                    {"previous": str(old.value), "value": str(read.value),
                     "capacity": str(self.policy.capacity)},
                ),
            )  # fmt: skip
        elif limit is not None and delta > limit:
            return self._broken(
                old, slot, "implausible_delta", Severity.WARNING,
                {"previous": str(old.value), "value": str(read.value), "delta": str(delta),
                 "limit": str(limit)},
            )  # fmt: skip
        energy = delta * self.policy.multiplier
        covered = self.missing_until is not None and self.missing_until > old.slot
        if duration == self.interval and not covered:
            actual = self._row(old.slot, slot, energy)
            return Outcome((actual,), anomalies)
        missing = self._fill_missing(old.slot, slot)
        span = self._row(old.slot, slot, energy, version=2, reasons=(SPAN_REASON,))
        return Outcome((*missing, span), anomalies)

    def resume(
        self, end: datetime | None, reads: Sequence[RegisterRead], latest: RegisterRead | None,
        *, identity: str = "",
    ) -> Outcome:  # fmt: skip
        """Resume from what is stored: anchor at the read ending the last interval, go on.

        This is how a series continues after a restart, and after the database was
        away or spooled rows were dropped: the intervals are derived from the reads
        the database holds, so a read that never reached it leaves a gap that the
        next stored read bridges with a span (backfill then replaces it).

        Args:
            end: the end of the series' last stored interval (``None``: none yet).
            reads: the polled reads stored from one interval before ``end`` on, oldest first.
            latest: the latest stored read of the channel, if any (bridges a meter that
                failed before ``end``).
            identity: who took the reads.

        Returns:
            The rows and anomalies of the reads after the anchor.
        """
        anchor: RegisterRead | None
        if end is None:  # no interval yet: the first read starts the series
            done = min(1, len(reads))
            anchor = reads[0] if reads else latest
        else:
            done = sum(1 for r in reads if floor_boundary(r.read_at, self.interval) <= end)
            if done:
                anchor = reads[done - 1]
            elif latest is not None and floor_boundary(latest.read_at, self.interval) <= end:
                anchor = latest  # the meter failed before: bridge from its last read
            else:
                anchor = None
        self.anchor = None if anchor is None else Anchor(
            slot=floor_boundary(anchor.read_at, self.interval), value=anchor.value,
            identity=identity,
        )  # fmt: skip
        self.missing_until = end
        out = Outcome()
        for read in reads[done:]:
            out += self.read(read, identity=identity)
        return out

    def missed(self, boundary: datetime) -> Outcome:
        """Record that the read for ``boundary`` failed: the slots before it are missing.

        Args:
            boundary: the boundary whose read did not arrive (aware).

        Returns:
            A ``MISSING`` row for each slot from the anchor up to ``boundary`` that
            has no row yet (nothing when the series has not started).
        """
        if self.anchor is None:
            return Outcome()
        return Outcome(
            self._fill_missing(self.anchor.slot, floor_boundary(boundary, self.interval))
        )

    # --- internals ------------------------------------------------------------------

    def _wrapped(self, previous: Decimal, value: Decimal, limit: Decimal | None) -> Decimal | None:
        capacity = self.policy.capacity
        if capacity is None or not 0 <= value < capacity or previous >= capacity:
            return None
        wrapped = capacity - previous + value
        if limit is not None:
            return wrapped if wrapped <= limit else None
        band = capacity * _WRAP_BAND
        return wrapped if previous >= capacity - band and value < band else None

    def _broken(
        self,
        old: Anchor,
        slot: datetime,
        kind: str,
        severity: Severity,
        evidence: dict[str, object],
    ) -> Outcome:
        """The series cannot bridge ``[old.slot, slot)``: missing rows and an anomaly."""
        anomaly = self._anomaly(kind, severity, old.slot, slot, evidence)
        return Outcome(self._fill_missing(old.slot, slot), (anomaly,))

    def _fill_missing(self, start: datetime, end: datetime) -> tuple[Interval, ...]:
        first = start if self.missing_until is None else max(start, self.missing_until)
        rows = tuple(
            Interval(
                meter_id=self.meter_id,
                channel=self.channel,
                start=at,
                end=at + self.interval,
                value=None,
                quality=Quality.MISSING,
            )
            for at in slots(first, end, self.interval)
        )
        if self.missing_until is None or end > self.missing_until:
            self.missing_until = end
        return rows

    def _row(
        self,
        start: datetime,
        end: datetime,
        energy: Decimal,
        *,
        version: int = 1,
        reasons: tuple[str, ...] = (),
    ) -> Interval:
        return Interval(
            meter_id=self.meter_id, channel=self.channel, start=start, end=end, value=energy,
            quality=Quality.ACTUAL, source=Source.POLL, version=version, reason_codes=reasons,
        )  # fmt: skip

    def _anomaly(
        self, kind: str, severity: Severity, start: datetime, end: datetime,
        evidence: dict[str, object],
    ) -> Anomaly:  # fmt: skip
        return Anomaly(
            kind=kind, start=start, end=end, severity=severity, meter_id=self.meter_id,
            evidence={"channel": self.channel, **evidence},
        )  # fmt: skip


def normalize_reads(
    reads: Iterable[RegisterRead],
    *,
    interval: timedelta,
    policy: ChannelPolicy | None = None,
    identities: Iterable[str] | None = None,
) -> Outcome:
    """Normalize one series of reads (same meter and channel), in time order.

    Args:
        reads: the reads, oldest first.
        interval: the interval length.
        policy: multiplier and plausibility limits.
        identities: who took each read (for meter exchanges); default: all the same.

    Returns:
        Every row and anomaly the series produces.
    """
    items = list(reads)
    if not items:
        return Outcome()
    who = list(identities) if identities is not None else [""] * len(items)
    series = SeriesNormalizer(
        meter_id=items[0].meter_id, channel=items[0].channel, interval=interval,
        policy=policy or ChannelPolicy(),
    )  # fmt: skip
    out = Outcome()
    for read, identity in zip(items, who, strict=True):
        out += series.read(read, identity=identity)
    return out


def latest(intervals: Iterable[Interval]) -> list[Interval]:
    """The rows billing sees: per start time, the highest version, by start."""
    best: dict[tuple[int, str, datetime], Interval] = {}
    for iv in intervals:
        key = (iv.meter_id, iv.channel, iv.start)
        if key not in best or iv.version > best[key].version:
            best[key] = iv
    return sorted(best.values(), key=lambda iv: (iv.meter_id, iv.channel, iv.start))
