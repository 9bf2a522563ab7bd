"""The per-key rate limit shared by the API processes (setting ``api_processes`` above 1).

Each API process used to keep its own token buckets, so a key got its rate once per
process. The buckets now live in a small file the service creates and every API
process maps: a fixed table of slots (a key's digest, its tokens, when they were
counted), updated under an ``fcntl`` lock on the file. The kernel drops that lock when
its holder dies, so an API process killed mid-update cannot stall the others, and a
process started again maps the same table. ``time.monotonic`` is the system's
monotonic clock, the same in every process.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
from pathlib import Path

from amigate.api.v1.auth import RateLimiter

#: One slot: a key's digest (zero: free), its tokens, and the monotonic time counted.
_SLOT = struct.Struct("<8sdd")
#: Slots tried from a key's own before one is taken over (the least recently used).
_PROBES = 8
_FREE = bytes(8)


def create_table(slots: int = 4096) -> Path:
    """A new, empty table of ``slots`` buckets (96 kB for 4,096 keys) in memory-backed
    ``/dev/shm`` where there is one, else the temporary folder; the caller removes it."""
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, name = tempfile.mkstemp(prefix="amigate-rate-", dir=folder)
    try:
        os.ftruncate(fd, slots * _SLOT.size)
    finally:
        os.close(fd)
    return Path(name)


class SharedRateLimiter(RateLimiter):
    """:class:`RateLimiter`'s token buckets, kept in a table (:func:`create_table`) that
    every process mapping it shares."""

    def __init__(self, table: Path, rate: float, burst: int) -> None:
        """Map ``table``; allow ``rate`` requests per second with bursts of ``burst``."""
        super().__init__(rate, burst)
        self._file = open(table, "r+b")  # noqa: SIM115 - kept open for the lock
        self._map = mmap.mmap(self._file.fileno(), 0)
        self._slots = len(self._map) // _SLOT.size
        self._thread_lock = threading.Lock()  # fcntl locks are per process, not thread

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when allowed, else seconds until one is free."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        if digest == _FREE:
            digest = b"\x01" + digest[1:]
        first = int.from_bytes(digest[:4], "little") % self._slots
        with self._thread_lock:
            fcntl.lockf(self._file, fcntl.LOCK_EX)
            try:
                now = time.monotonic() if now is None else now
                offset, tokens, last = self._find(digest, first, now)
                tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
                allowed = tokens >= 1
                if allowed:
                    tokens -= 1
                _SLOT.pack_into(self._map, offset, digest, tokens, now)
            finally:
                fcntl.lockf(self._file, fcntl.LOCK_UN)
        return 0.0 if allowed else (1 - tokens) / self.rate

    def _find(self, digest: bytes, first: int, now: float) -> tuple[int, float, float]:
        """The offset of ``digest``'s slot and its tokens and time: its own, a free one
        (a full bucket), or else the least recently used of the slots tried."""
        oldest, oldest_at = first * _SLOT.size, float("inf")
        for probe in range(min(_PROBES, self._slots)):
            offset = (first + probe) % self._slots * _SLOT.size
            held, tokens, last = _SLOT.unpack_from(self._map, offset)
            if held == digest:
                return offset, tokens, last
            if held == _FREE:
                return offset, self.burst, now
            if last < oldest_at:
                oldest, oldest_at = offset, last
        return oldest, self.burst, now  # its key starts again with a full bucket

    def close(self) -> None:
        """Unmap the table."""
        self._map.close()
        self._file.close()
