"""Keep the resident size of a long-running service flat on glibc (small gateways).

Python frees memory back to the C allocator, but glibc keeps freed pages of each
thread's arena for reuse, so a service whose database calls hop between worker
threads grows its resident size long after its live objects stopped growing. Two
glibc calls bound that: fewer arenas (``mallopt``) and handing free pages back
(``malloc_trim``). On other C libraries (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

__all__ = ["bound_allocator", "trim"]

#: mallopt parameter: the most malloc arenas glibc creates.
_M_ARENA_MAX = -8


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def bound_allocator(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; return whether the allocator took it."""
    return bool(_LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap pages back to the system; return whether any were released."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))
