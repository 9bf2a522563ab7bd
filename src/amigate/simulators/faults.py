"""Faults a simulated meter can be told to show: on the wire, in its clock, in its registers."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from amigate.errors import ConfigError


class FaultKind(StrEnum):
    """What goes wrong."""

    NO_REPLY = "no_reply"  #: the meter stays silent
    LATE_REPLY = "late_reply"  #: the reply comes after ``delay`` seconds
    FLIP_BYTE = "flip_byte"  #: one bit of one reply byte flips on the line
    BAD_CHECKSUM = "bad_checksum"  #: the reply's checksum byte is wrong
    ABNORMAL = "abnormal"  #: an abnormal reply with error byte ``code``
    CLOCK_JUMP = "clock_jump"  #: the clock jumps by ``seconds`` (once)
    REGISTER_BACKWARDS = "register_backwards"  #: active import runs backwards
    REGISTER_STOPPED = "register_stopped"  #: active import stops counting

    @property
    def on_reply(self) -> bool:
        """True for faults that act on each reply, false for changes of state."""
        return self in _REPLY_FAULTS


_REPLY_FAULTS = frozenset(
    {
        FaultKind.NO_REPLY,
        FaultKind.LATE_REPLY,
        FaultKind.FLIP_BYTE,
        FaultKind.BAD_CHECKSUM,
        FaultKind.ABNORMAL,
    }
)
_KEYS = {"kind", "di", "count", "probability", "delay", "code", "seconds", "after", "byte", "bit"}


@dataclass(kw_only=True)
class Fault:
    """One injected fault.

    Attributes:
        kind: what goes wrong.
        di: reply faults only: act on requests for this data identifier only.
        count: reply faults only: act on this many replies, then stop (None = forever).
        probability: reply faults only: chance of acting on a given reply.
        delay: ``late_reply``: seconds before the reply is sent.
        code: ``abnormal``: the error byte (02H = no requested data in 2007).
        seconds: ``clock_jump``: how far the clock jumps (negative = back).
        after: seconds after the simulation start at which the fault begins.
        byte: ``flip_byte``: index of the byte to garble (negative counts from the end).
        bit: ``flip_byte``: which bit to flip.
    """

    kind: FaultKind
    di: int | None = None
    count: int | None = None
    probability: float = 1.0
    delay: float = 2.0
    code: int = 0x02
    seconds: float = 0.0
    after: float = 0.0
    byte: int = -3
    bit: int = 0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: a value out of range.
        """
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"fault {self.kind}: probability {self.probability} not in 0..1")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"fault {self.kind}: count {self.count} must be >= 0")
        if not 0 <= self.code <= 0xFF or not 0 <= self.bit <= 7:
            raise ConfigError(f"fault {self.kind}: code must be a byte and bit within 0..7")
        if self.delay < 0 or self.after < 0:
            raise ConfigError(f"fault {self.kind}: delay and after must be >= 0")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> Fault:
        """Build a fault from a scenario table (``{kind = "late_reply", delay = 3}``).

        Raises:
            ConfigError: unknown kind or key, or a bad value.
        """
        unknown = set(table) - _KEYS
        if unknown:
            raise ConfigError(f"fault: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            kind = FaultKind(table["kind"])
        except KeyError:
            raise ConfigError("fault: missing 'kind'") from None
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ConfigError(f"fault: kind {table['kind']!r} is not one of {kinds}") from None
        di = table.get("di")
        try:
            return cls(
                kind=kind,
                di=int(di, 16) if isinstance(di, str) else di,
                count=table.get("count"),
                probability=float(table.get("probability", 1.0)),
                delay=float(table.get("delay", 2.0)),
                code=int(table.get("code", 0x02)),
                seconds=float(table.get("seconds", 0.0)),
                after=float(table.get("after", 0.0)),
                byte=int(table.get("byte", -3)),
                bit=int(table.get("bit", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fault {kind}: {exc}") from exc

    def starts(self, origin: datetime) -> datetime:
        """When the fault begins, for a simulation that started at ``origin``."""
        return origin + timedelta(seconds=self.after)


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """What the faults make of one reply."""

    silent: bool = False
    delay: float = 0.0
    abnormal_code: int | None = None
    flips: tuple[tuple[int, int], ...] = ()  #: (byte index, bit)
    bad_checksum: bool = False

    def garble(self, raw: bytes) -> bytes:
        """Apply byte flips and a checksum error to an encoded reply."""
        data = bytearray(raw)
        for index, bit in self.flips:
            data[index] ^= 1 << bit
        if self.bad_checksum:
            data[-2] = (data[-2] + 1) & 0xFF
        return bytes(data)


class FaultSet:
    """The faults of one meter, and the random source for probabilistic ones."""

    def __init__(self, faults: list[Fault] | None = None, *, seed: int = 0) -> None:
        """Hold ``faults``; ``seed`` makes probabilistic faults reproducible."""
        self.faults: list[Fault] = list(faults or [])
        self._random = random.Random(seed)
        self._applied: set[int] = set()

    def add(self, fault: Fault) -> Fault:
        """Inject a fault now (tests and the interactive simulator use this)."""
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault (state faults already applied stay applied)."""
        self.faults.clear()

    def pending_state_faults(self, origin: datetime, now: datetime) -> list[Fault]:
        """Return state faults that began by ``now`` and were not applied yet, in order."""
        due = [
            f
            for f in self.faults
            if not f.kind.on_reply and id(f) not in self._applied and f.starts(origin) <= now
        ]
        for fault in due:
            self._applied.add(id(fault))
        return sorted(due, key=lambda f: f.after)

    def plan(self, di: int | None, origin: datetime, now: datetime) -> ReplyPlan:
        """Decide what happens to the reply to a request for ``di`` at ``now``."""
        silent = False
        delay = 0.0
        code: int | None = None
        flips: list[tuple[int, int]] = []
        bad = False
        for fault in self.faults:
            if not fault.kind.on_reply or fault.starts(origin) > now:
                continue
            if fault.di is not None and fault.di != di:
                continue
            if fault.count is not None and fault.count <= 0:
                continue
            if fault.probability < 1.0 and self._random.random() >= fault.probability:
                continue
            if fault.count is not None:
                fault.count -= 1
            if fault.kind is FaultKind.NO_REPLY:
                silent = True
            elif fault.kind is FaultKind.LATE_REPLY:
                delay = max(delay, fault.delay)
            elif fault.kind is FaultKind.ABNORMAL:
                code = fault.code
            elif fault.kind is FaultKind.FLIP_BYTE:
                flips.append((fault.byte, fault.bit))
            else:
                bad = True
        return ReplyPlan(
            silent=silent, delay=delay, abnormal_code=code, flips=tuple(flips), bad_checksum=bad
        )
