"""DL/T 645 master: request/response transactions over an injected transport.

The codec turns frames into bytes and back; this module owns the bus
discipline: one request in flight per bus, a response timeout computed from the
line speed and the expected reply size, retries, waiting out late replies, and
checking that a reply answers the request that was sent.

A plain read is the same bytes every cycle for the same meter and identifier. A
client encodes each identifier's request once (for address 000000000000, with its
response timeout) and each meter's address field once, and splices the two: the
codec's bytes, the address in its place, the checksum adjusted by the address
bytes. Both tables are bounded (oldest out first) and small: one entry per
identifier and one per meter, not one per pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from amigate.codecs import (
    ADDRESS_WILDCARD,
    Category,
    Dlt645Buffer,
    Dlt645Version,
    Frame,
    ReadResponse,
    build_read_address,
    build_read_followup,
    build_read_request,
    build_time_sync,
    decode_address_response,
    decode_read_response,
    decode_values,
    di_size,
    encode_frame,
    expected_response_length,
    find_di,
)
from amigate.errors import (
    AmigateError,
    ChecksumError,
    FrameError,
    ReadTimeout,
    UnexpectedReply,
)
from amigate.transports.base import DEFAULT_EXCEPTION_MAP, Transport, translate_exception

__all__ = ["ClientStats", "Dlt645Client", "address_matches"]

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
#: Most follow-up frames accepted for one read (a guard against a meter that never stops).
_MAX_FOLLOW_UPS = 64
#: Reply size assumed for the read-address command: 4 FE + 12 + 6 address bytes.
_ADDRESS_REPLY = 22
#: Most identifiers whose read request a client keeps encoded.
_TEMPLATE_CACHE = 1024
#: Most meter address fields a client keeps encoded (a bus has far fewer meters).
_ADDRESS_CACHE = 16_384
#: The address a read request is encoded for before a meter's address is spliced in.
_ZERO_ADDRESS = "000000000000"


@dataclass(frozen=True, slots=True)
class _ReadTemplate:
    """The plain read request of one identifier, encoded for address 000000000000.

    ``lead`` + address field + ``tail`` + checksum + ``end`` is the request of any
    meter; the checksum is ``checksum`` plus the sum of the address bytes.
    """

    function: int
    lead: bytes  # preamble and the first 68H
    tail: bytes  # the second 68H, C, L and the DATA field
    checksum: int
    end: bytes
    timeout: float
    what: str


@dataclass
class ClientStats:
    """Counters a poller can export as metrics."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    frame_errors: int = 0
    unexpected: int = 0
    stray_frames: int = 0
    late_bytes: int = 0
    rejected: int = 0
    followups: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def address_matches(requested: str, replied: str) -> bool:
    """Tell whether a reply's address fits the requested one.

    ``AA`` bytes in the requested address are wildcards (the whole ``AAAAAAAAAAAA``
    or an abbreviated address such as ``AAAAAAAA0161``); every other byte must match.

    Args:
        requested: the address the request was sent to.
        replied: the address in the reply.

    Returns:
        True when the reply may come from the addressed meter.
    """
    if requested == replied:
        return True
    return all(
        req == "AA" or req == rep
        for req, rep in zip(
            (requested[i : i + 2] for i in range(0, 12, 2)),
            (replied[i : i + 2] for i in range(0, 12, 2)),
            strict=True,
        )
    )


class Dlt645Client:
    """Reads DL/T 645 meters on one bus.

    Create one client per bus (serial port or TCP serial server), or share one
    ``lock`` between clients of the same bus: the bus is half-duplex and only one
    request may be in flight.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        version: Dlt645Version = Dlt645Version.V2007,
        baud: int = 2400,
        bits_per_char: float = 11,
        slack: float = 0.3,
        retries: int = 1,
        quiet: float = 0.5,
        max_response_delay: float = 0.5,
        preamble: int = 4,
        lock: asyncio.Lock | None = None,
        timeout: float | None = None,
    ) -> None:
        """Set up the client.

        Args:
            transport: an open transport to the bus; the client does not close it.
            version: the protocol generation the meters on this bus speak.
            baud: the line speed of the bus (behind a TCP serial server: its serial side).
            bits_per_char: bits per byte on the wire (11 for 8E1, 10 for 8N1).
            slack: seconds added to every response timeout (gateways, USB adapters).
            retries: how many times a request is repeated after a timeout, a garbled
                reply or a reply to something else; device rejections are not retried.
            quiet: the silence that ends the wait for late replies after a failure.
            max_response_delay: Td, the longest time a meter may take to start
                answering (500 ms in the standard).
            preamble: FEH wake-up bytes sent before each request.
            lock: a lock shared with other clients of the same bus.
            timeout: a fixed response timeout in seconds, instead of the computed one.

        Raises:
            ValueError: a negative or impossible setting.
        """
        if baud <= 0 or bits_per_char <= 0 or slack < 0 or retries < 0 or quiet < 0:
            raise ValueError("baud and bits_per_char must be > 0; slack, retries, quiet >= 0")
        self.transport = transport
        self.version = version
        self.byte_time = bits_per_char / baud
        self.slack = slack
        self.retries = retries
        self.quiet = quiet
        self.max_response_delay = max_response_delay
        self.preamble = preamble
        self.fixed_timeout = timeout
        self.stats = ClientStats()
        self._lock = lock or asyncio.Lock()
        self._must_drain = False
        self._templates: dict[int, _ReadTemplate] = {}
        self._addresses: dict[str, tuple[bytes, int]] = {}

    @property
    def cached_encodings(self) -> tuple[int, int]:
        """Identifiers and meter addresses kept encoded for plain reads."""
        return len(self._templates), len(self._addresses)

    def _plain_read(self, address: str, di: int) -> tuple[bytes, _ReadTemplate]:
        """The bytes of a plain read of ``di`` at ``address``, and the identifier's template.

        Raises:
            DataError: an identifier too large for the version.
            FrameFormatError: an address that is not 12 hex digits.
        """
        template = self._templates.get(di)
        if template is None:
            frame = build_read_request(_ZERO_ADDRESS, di, self.version)
            raw = encode_frame(frame, preamble=self.preamble)
            at = self.preamble + 1  # where the address field starts
            template = _ReadTemplate(
                frame.function, raw[:at], raw[at + 6 : -2], raw[-2], raw[-1:],
                self.read_timeout(frame, di), f"DI {di:0{2 * di_size(self.version)}X}",
            )  # fmt: skip
            _keep(self._templates, di, template, _TEMPLATE_CACHE)
        field = self._addresses.get(address)
        if field is None:
            wire = encode_frame(Frame(address, 0, b""), preamble=0)[1:7]
            field = (wire, sum(wire))
            _keep(self._addresses, address, field, _ADDRESS_CACHE)
        checksum = bytes(((template.checksum + field[1]) & 0xFF,))
        return b"".join((template.lead, field[0], template.tail, checksum, template.end)), template

    def response_timeout(self, request_bytes: int, response_bytes: int) -> float:
        """Return how long to wait for a complete reply.

        Wire time of the request and of the expected reply at the bus's line speed,
        plus Td (the meter's maximum response delay), plus the configured slack.

        Args:
            request_bytes: bytes sent, preamble included.
            response_bytes: bytes of the expected reply, preamble included.

        Returns:
            Seconds.
        """
        if self.fixed_timeout is not None:
            return self.fixed_timeout
        wire = (request_bytes + response_bytes) * self.byte_time
        return wire + self.max_response_delay + self.slack

    def read_timeout(self, request: Frame, di: int, *, blocks: int = 1) -> float:
        """Return the response timeout for a read request (per frame of the reply).

        Args:
            request: the request frame to be sent.
            di: the identifier it reads.
            blocks: load-profile records asked for.

        Returns:
            Seconds.
        """
        sent = self.preamble + 12 + len(request.data)
        reply = expected_response_length(di, self.version)
        spec = find_di(di, self.version)
        if spec is not None and spec.category is Category.LOAD_PROFILE:
            reply = min(reply + (blocks - 1) * spec.length, 4 + 12 + 200)
        return self.response_timeout(sent, reply)

    async def read(
        self,
        address: str,
        di: int,
        *,
        blocks: int | None = None,
        since: datetime | None = None,
    ) -> ReadResponse:
        """Read one data identifier, following up when the meter has more frames.

        Args:
            address: the meter's 12-digit address, or a (partial) wildcard.
            di: the data identifier.
            blocks: load-profile reads only: the number of records asked for.
            since: load-profile "from a given time" reads only: the first record time.

        Returns:
            The decoded reply; its ``address`` is the meter's real address.

        Raises:
            ReadTimeout: no complete reply within the timeout, after every retry.
            ChecksumError: replies arrived garbled on every attempt.
            UnexpectedReply: only replies to something else arrived.
            DeviceRejected: the meter answered with an abnormal reply.
            TransportError: the port or connection failed.
        """
        if blocks is None and since is None:
            raw, template = self._plain_read(address, di)
            function, timeout, what = template.function, template.timeout, template.what
        else:
            request = build_read_request(address, di, self.version, blocks=blocks, since=since)
            raw = encode_frame(request, preamble=self.preamble)
            function, timeout = request.function, self.read_timeout(request, di, blocks=blocks or 1)
            what = f"DI {di:0{2 * di_size(self.version)}X}"
        async with self._lock:
            frame = await self._transact(function, raw, address, di, timeout, what)
            first = decode_read_response(frame, version=self.version, expected_di=di)
            if not first.follow_up:
                return first
            payload = bytearray(first.payload)
            real = frame.address
            last = first
            for seq in range(1, _MAX_FOLLOW_UPS + 1):
                self.stats.followups += 1
                follow = build_read_followup(real, di, seq, self.version)
                raw = encode_frame(follow, preamble=self.preamble)
                frame = await self._transact(
                    follow.function, raw, real, di, timeout, f"{what} follow-up {seq}"
                )
                last = decode_read_response(frame, version=self.version, expected_di=di)
                payload += last.payload
                if not last.follow_up:
                    break
            else:
                raise UnexpectedReply(
                    f"meter {real} kept announcing follow-up frames for {what} "
                    f"after {_MAX_FOLLOW_UPS}"
                )
        values = decode_values(first.spec, bytes(payload)) if first.spec is not None else ()
        return ReadResponse(
            address=first.address,
            version=first.version,
            di=first.di,
            data=first.data[: di_size(self.version)] + bytes(payload),
            payload=bytes(payload),
            values=values,
            follow_up=False,
            seq=last.seq,
            spec=first.spec,
        )

    async def read_address(self) -> str:
        """Ask the only meter on the bus for its address.

        DL/T 645-2007 uses the read-address command (13H) at the wildcard address;
        1997 has none, so the meter number (C032) is read at the wildcard address and
        the reply's address field is returned.

        Returns:
            The meter's 12-digit address.

        Raises:
            ReadTimeout: no meter answered (or several answered at once and collided).
            ChecksumError: the reply was garbled on every attempt.
            TransportError: the port or connection failed.
        """
        if self.version is Dlt645Version.V1997:
            reply = await self.read(ADDRESS_WILDCARD, 0xC032)
            return reply.address
        request = build_read_address(ADDRESS_WILDCARD)
        raw = encode_frame(request, preamble=self.preamble)
        timeout = self.response_timeout(self.preamble + 12, _ADDRESS_REPLY)
        async with self._lock:
            frame = await self._transact(
                request.function, raw, ADDRESS_WILDCARD, None, timeout, "address"
            )
        return decode_address_response(frame)

    async def time_sync(self, when: datetime) -> None:
        """Broadcast a time set (08H) to every meter on the bus; no meter answers.

        Args:
            when: the meters' new wall-clock (local) time.

        Raises:
            TransportError: the port or connection failed.
        """
        raw = encode_frame(build_time_sync(when, self.version), preamble=self.preamble)
        async with self._lock:
            await self._drain_if_needed()
            self.stats.requests += 1
            await self._io(self.transport.write(raw), "write")
            # Let the frame leave the line before anyone sends the next request.
            await asyncio.sleep(len(raw) * self.byte_time)

    async def _io(self, operation: Awaitable[_T], verb: str) -> _T:
        """Await a transport call, translating foreign errors like ``map_exceptions``.

        Written out (no context manager): this wraps every write and read of a poll.
        """
        try:
            return await operation
        except AmigateError:
            raise
        except Exception as exc:
            ours = translate_exception(
                exc, DEFAULT_EXCEPTION_MAP, context=f"{verb} {self.transport.name}"
            )
            if ours is None:
                raise
            raise ours from exc

    async def _drain_if_needed(self) -> None:
        if self._must_drain:
            self._must_drain = False
            late = await self._io(self.transport.drain_input(self.quiet), "drain")
            if late:
                self.stats.late_bytes += len(late)
                if _LOG.isEnabledFor(logging.DEBUG):
                    _LOG.debug("discarded %d late bytes: %s", len(late), late.hex(" "))

    async def _transact(
        self, function: int, raw: bytes, address: str, di: int | None, wait: float, what: str
    ) -> Frame:
        """Send ``raw`` (a ``function`` request); return the frame answering it, retrying."""
        attempts = self.retries + 1
        failure: AmigateError | None = None
        for attempt in range(1, attempts + 1):
            await self._drain_if_needed()
            if attempt > 1:
                self.stats.retries += 1
            try:
                return await self._exchange(function, raw, address, di, wait)
            except (ReadTimeout, FrameError, UnexpectedReply) as exc:
                failure = exc
                self._must_drain = True  # late or leftover bytes must not meet the next request
                _LOG.debug("attempt %d/%d for %s at %s: %s", attempt, attempts, what, address, exc)
        assert failure is not None
        raise _final(failure, f"meter {address}, {what}, {attempts} attempt(s)") from failure

    async def _exchange(
        self, function: int, raw: bytes, address: str, di: int | None, wait: float
    ) -> Frame:
        self.stats.requests += 1
        debug = _LOG.isEnabledFor(logging.DEBUG)
        if debug:
            _LOG.debug("tx %s", raw.hex(" "))
        await self._io(self.transport.write(raw), "write")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        buffer = Dlt645Buffer()
        problem: AmigateError | None = None
        while (remaining := deadline - loop.time()) > 0:
            try:
                chunk = await self._io(self.transport.read(512, remaining), "read")
            except ReadTimeout:
                break
            buffer.feed(chunk)
            while True:
                try:
                    frame = buffer.next_frame()
                except FrameError as exc:
                    self.stats.frame_errors += 1
                    problem = exc
                    continue
                if frame is None:
                    break
                if debug:
                    _LOG.debug("rx %s %02X %s", frame.address, frame.control, frame.data.hex(" "))
                mismatch = self._mismatch(function, frame, address, di)
                if mismatch is None:
                    return frame
                if mismatch:
                    self.stats.unexpected += 1
                    problem = UnexpectedReply(mismatch)
        if problem is not None:
            raise problem
        self.stats.timeouts += 1
        raise ReadTimeout(f"no reply within {wait:.2f} s on {self.transport.name}")

    def _mismatch(self, function: int, frame: Frame, address: str, di: int | None) -> str | None:
        """Return None for the answer, "" for a frame to ignore, or why it does not answer."""
        if not frame.is_response:
            return ""  # our own request echoed by a 2-wire adapter, or another master
        if not address_matches(address, frame.address):
            self.stats.stray_frames += 1
            return ""  # another meter's reply: keep waiting for ours
        if frame.function != function:
            return (
                f"meter {frame.address} answered function {frame.function:02X}H "
                f"to a {function:02X}H request"
            )
        if frame.abnormal or di is None:
            return None
        size = di_size(self.version)
        echoed = int.from_bytes(frame.data[:size], "little") if len(frame.data) >= size else -1
        if echoed != di:
            return (
                f"meter {frame.address} answered DI {echoed:0{2 * size}X} "
                f"to a request for {di:0{2 * size}X}"
            )
        return None


def _keep(table: dict[_K, _V], key: _K, value: _V, most: int) -> None:
    """Add ``key`` to a bounded table, dropping the oldest entry when it is full."""
    if len(table) >= most:
        del table[next(iter(table))]
    table[key] = value


def _final(failure: AmigateError, context: str) -> AmigateError:
    """Re-create the last failure with the request in its message."""
    message = f"{context}: {failure}"
    if isinstance(failure, ChecksumError):
        return ChecksumError(message, expected=failure.expected, received=failure.received)
    return type(failure)(message)
