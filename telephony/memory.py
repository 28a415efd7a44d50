"""Give the memory freed by finished calls back to the OS when the line falls quiet.

After a busy spell glibc keeps the freed heap for reuse, so the process's RSS stays at its
high-water mark although nothing is allocated there. `malloc_trim(0)` returns those free
pages (in every arena). It runs in the thread that finished the last call, outside the GIL
(ctypes lets go of it), and only when no call is live, so no audio thread waits for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_libc = None
if sys.platform == "linux":
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        _libc = None
    if _libc is not None and not hasattr(_libc, "malloc_trim"):  # glibc only (musl has none)
        _libc = None


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True if some were (False where there is no glibc)."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))
