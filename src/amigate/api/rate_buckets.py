"""The per-key rate limit shared by the API processes (setting ``api_processes`` above 1).

Buckets kept by each process would give a key its rate once per process. These live
in a table of fixed slots (a key's digest, its tokens, when they were counted) in an
anonymous memory file the service creates and hands to each API process it spawns,
as a file descriptor: every process maps the same pages, and updates them under an
``fcntl`` lock on the file. The file has no name, so nothing
can remove it from under a process started again later, and nothing is left behind
when the service ends, however it ends; the kernel drops a lock when its holder dies,
so an API process killed mid-update cannot stall the others. ``time.monotonic`` is
the system's monotonic clock, the same in every process.
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
from multiprocessing import reduction
from typing import Any

from amigate.api.v1.auth import RateLimiter

#: One slot: a key's digest (zero: free), its tokens, and the monotonic time counted.
_SLOT = struct.Struct("<8sdd")
#: Slots tried from a key's own before one is taken over (the least recently used).
_PROBES = 8
_FREE = bytes(8)


class RateTable:
    """The memory file of the buckets. Passed to a process being spawned (in its
    arguments), it arrives there as a descriptor of the same file."""

    def __init__(self, slots: int = 4096, *, fd: int | None = None) -> None:
        """A new, empty table of ``slots`` buckets (96 kB for 4,096 keys), or the one
        open on ``fd``."""
        if fd is None:
            try:  # Linux: memory only
                fd = os.memfd_create("amigate-rate-buckets")
            except (AttributeError, OSError):  # elsewhere, or refused: a file without a name
                with tempfile.TemporaryFile() as unnamed:
                    fd = os.dup(unnamed.fileno())
            os.ftruncate(fd, slots * _SLOT.size)
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return _open_table, (reduction.DupFd(self.fd),)

    def close(self) -> None:
        """Close this process's descriptor (the memory goes with the last one)."""
        os.close(self.fd)


def _open_table(duplicate: Any) -> RateTable:
    return RateTable(fd=duplicate.detach())


class SharedRateLimiter(RateLimiter):
    """:class:`RateLimiter`'s token buckets, kept in a :class:`RateTable` that every
    process mapping it shares."""

    def __init__(self, table: RateTable, rate: float, burst: int) -> None:
        """Map ``table``; allow ``rate`` requests per second with bursts of ``burst``."""
        super().__init__(rate, burst)
        self._fd = table.fd
        self._map = mmap.mmap(self._fd, 0)
        self._slots = len(self._map) // _SLOT.size
        self._thread_lock = threading.Lock()  # fcntl locks are per process, not thread

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``; return 0 when allowed, else seconds until one is free."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        if digest == _FREE:
            digest = b"\x01" + digest[1:]
        first = int.from_bytes(digest[:4], "little") % self._slots
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                now = time.monotonic() if now is None else now
                offset, tokens, last = self._find(digest, first, now)
                tokens, wait = self.spend(tokens, now - last)
                _SLOT.pack_into(self._map, offset, digest, tokens, now)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return wait

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
