"""A virtual RS-485 multi-drop bus: bytes from the master in, meter replies out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from amigate.codecs import ADDRESS_BROADCAST, Dlt645Buffer
from amigate.drivers.dlt645 import address_matches
from amigate.errors import FrameError
from amigate.simulators.dlt645_meter import Clock, Dlt645Meter, Reply
from amigate.simulators.physics import utc_now

_LOG = logging.getLogger(__name__)


class VirtualBus:
    """Many meters with distinct addresses sharing one half-duplex line.

    Requests are cut into frames and routed by address; meters that are not
    addressed stay silent, as on a real bus. Several meters answering one wildcard
    request collide: their replies are OR-ed together, as overlapping RS-485
    drivers would leave them.
    """

    def __init__(
        self,
        meters: Iterable[Dlt645Meter] = (),
        *,
        name: str = "bus",
        clock: Clock = utc_now,
        baud: int = 2400,
        bits_per_char: float = 11,
        wire_time: bool = False,
    ) -> None:
        """Create the bus.

        Args:
            meters: the meters on it; addresses must be distinct.
            name: a label for logs and listings.
            clock: the simulated time source (inject a manual clock in tests).
            baud: the line speed, for wire-time emulation.
            bits_per_char: bits per byte on the wire (11 for 8E1).
            wire_time: pace replies at the line speed instead of sending them at once.

        Raises:
            ValueError: two meters share an address.
        """
        self.name = name
        self.clock = clock
        self.byte_time = bits_per_char / baud
        self.wire_time = wire_time
        self.meters: dict[str, Dlt645Meter] = {}
        for meter in meters:
            self.add(meter)
        self._buffer = Dlt645Buffer()
        self.garbled_requests = 0

    def add(self, meter: Dlt645Meter) -> None:
        """Connect a meter.

        Raises:
            ValueError: its address is already on the bus.
        """
        if meter.address in self.meters:
            raise ValueError(f"address {meter.address} is already on bus {self.name}")
        self.meters[meter.address] = meter

    def receive(self, data: bytes, now: datetime | None = None) -> list[Reply]:
        """Take bytes sent by the master and return what the meters answer.

        Args:
            data: bytes in any chunking; incomplete frames wait for the rest.
            now: the simulated time; defaults to the bus clock.

        Returns:
            The replies, in order.
        """
        self._buffer.feed(data)
        replies: list[Reply] = []
        while True:
            try:
                frame = self._buffer.next_frame()
            except FrameError as exc:
                self.garbled_requests += 1
                _LOG.debug("bus %s: garbled request ignored: %s", self.name, exc)
                continue
            if frame is None:
                return replies
            if frame.is_response:
                continue  # another device's reply: meters only answer masters
            when = now or self.clock()
            if frame.address == ADDRESS_BROADCAST:
                for meter in self.meters.values():
                    meter.handle(frame, when)
                continue
            exact = self.meters.get(frame.address)  # meter addresses are digits: no wildcard
            addressed = (
                [exact] if exact is not None
                else [m for a, m in self.meters.items() if address_matches(frame.address, a)]
            )  # fmt: skip
            answers = [reply for meter in addressed for reply in meter.handle(frame, when)]
            if len(answers) > 1 and len(addressed) > 1:
                answers = [_collide(answers)]
            replies.extend(answers)

    def pacing(self, reply: Reply) -> float:
        """Seconds the reply occupies the line (0 unless wire time is emulated)."""
        return len(reply.data) * self.byte_time if self.wire_time else 0.0


def _collide(replies: list[Reply]) -> Reply:
    size = max(len(r.data) for r in replies)
    mixed = bytearray(size)
    for reply in replies:
        for i, byte in enumerate(reply.data):
            mixed[i] |= byte
    return Reply(bytes(mixed), max(r.delay for r in replies))
