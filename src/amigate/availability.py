"""Which meters of a bus answer: isolation, probing with backoff, and the status to store.

Like Home Assistant's update coordinator: a meter that stops answering is logged
once (WARNING) and marked unavailable, it is probed again after a backoff that
doubles up to ``plan.backoff_max_s`` (skipped meters cost the bus nothing), and
when it answers again that is logged once (INFO). Each change is also written to
the meter's stored status (``unavailable`` / ``active``), later if the database
is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from amigate.domain import Meter, MeterStatus
from amigate.errors import StorageError, StorageUnavailable
from amigate.fleet import ReadPlan
from amigate.storage.store import Store

__all__ = ["Availability", "MeterHealth"]

_LOG = logging.getLogger(__name__)


@dataclass
class MeterHealth:
    """Collection state of one meter."""

    available: bool = True
    failures: int = 0
    next_probe: datetime | None = None
    last_error: str = ""


class Availability:
    """The health of the meters of one bus."""

    def __init__(
        self, bus: str, plan: ReadPlan, meter_ids: Iterable[int], clock: Callable[[], datetime]
    ) -> None:
        """Every meter starts available."""
        self.bus, self.plan, self._clock = bus, plan, clock
        self.health: dict[int, MeterHealth] = {i: MeterHealth() for i in meter_ids}
        self.changes: dict[int, MeterStatus] = {}  # status changes not stored yet

    def available(self, meter_id: int) -> bool:
        """Whether the meter answered its last read."""
        return self.health[meter_id].available

    def isolated(self, meter_id: int) -> bool:
        """Whether the meter is unavailable and its next probe is not due yet."""
        health = self.health[meter_id]
        return not health.available and health.next_probe is not None \
            and self._clock() < health.next_probe  # fmt: skip

    @property
    def down(self) -> int:
        """How many meters are unavailable."""
        return sum(1 for h in self.health.values() if not h.available)

    def failed(self, meter: Meter, exc: BaseException, *, quiet: bool = False) -> None:
        """A read of ``meter`` failed (``quiet``: already logged with its traceback)."""
        assert meter.id is not None
        health = self.health[meter.id]
        health.failures += 1
        health.last_error = str(exc)
        delay = min(self.plan.backoff_max_s, self.plan.backoff_s * 2 ** (health.failures - 1))
        health.next_probe = self._clock() + timedelta(seconds=delay)
        if health.available:
            health.available = False
            self.changes[meter.id] = MeterStatus.UNAVAILABLE
            if not quiet:
                _LOG.warning(
                    "bus %s: meter %s (%s) is unavailable: %s; probing again in %.0f s",
                    self.bus, meter.address, meter.model, exc, delay,
                )  # fmt: skip

    def recovered(self, meter: Meter) -> None:
        """A read of ``meter`` succeeded."""
        assert meter.id is not None
        health = self.health[meter.id]
        if not health.available:
            self.changes[meter.id] = MeterStatus.ACTIVE
            _LOG.info(
                "bus %s: meter %s (%s) recovered after %d failed read(s)",
                self.bus, meter.address, meter.model, health.failures,
            )  # fmt: skip
        self.health[meter.id] = MeterHealth()

    async def store(self, store: Store) -> None:
        """Write the status changes (those the database cannot take now are kept)."""
        for meter_id, status in list(self.changes.items()):
            try:
                await asyncio.to_thread(store.set_meter_status, meter_id, status)
            except StorageUnavailable:
                return
            except StorageError as exc:
                _LOG.warning("bus %s: meter %d: status not stored: %s", self.bus, meter_id, exc)
            del self.changes[meter_id]
