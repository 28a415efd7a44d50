"""The C library, for the few calls Python does not wrap (thread names, heap trimming).

None off Linux or where the library cannot be loaded: callers then do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

LIBC: ctypes.CDLL | None = None
if sys.platform == "linux":
    try:
        LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        LIBC = None
