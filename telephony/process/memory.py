"""Give the memory freed by finished calls back to the OS when the line falls quiet.

After a busy spell glibc keeps the freed heap for reuse, so the process's RSS stays at its
high-water mark although nothing is allocated there. `malloc_trim(0)` returns those free
pages (in every arena). It runs in the thread that finished the last call, outside the GIL
(ctypes lets go of it), and only when no call is live, so no audio thread waits for it.
"""

from __future__ import annotations

from telephony.process.libc import LIBC

_malloc_trim = getattr(LIBC, "malloc_trim", None)  # glibc only (musl has none)


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True if some were (False where there is no glibc)."""
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))
