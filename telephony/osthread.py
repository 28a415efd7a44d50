"""Give the calling thread its Python name at the OS level too, so `top -H`, `ps -L` and
/proc/<pid>/task/*/comm show `rx-CA…` / `tx-CA…` instead of 200 threads called "python"."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_NAME = 15
OS_NAME_MAX = 15  # bytes, without the terminating NUL

_libc = None
if sys.platform == "linux":
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def name_this_thread(name: str) -> None:
    """Set the OS name of the calling thread (its first 15 bytes); a no-op off Linux."""
    if _libc is not None:
        _libc.prctl(PR_SET_NAME, name.encode()[:OS_NAME_MAX], 0, 0, 0)
