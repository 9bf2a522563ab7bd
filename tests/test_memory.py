"""The allocator bounds used by ``amigate run`` on glibc."""

from __future__ import annotations

import platform

from amigate.memory import bound_allocator, trim


def test_glibc_takes_the_arena_cap_and_trims() -> None:
    glibc = platform.libc_ver()[0] == "glibc"
    assert bound_allocator(2) is glibc
    blocks = [bytearray(1 << 16) for _ in range(2000)]  # 128 MiB, then freed
    del blocks
    assert trim() is glibc
