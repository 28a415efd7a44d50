"""Give the calling thread its Python name at the OS level too, so `top -H`, `ps -L` and
/proc/<pid>/task/*/comm show `rx-CA…` / `tx-CA…` instead of 200 threads called "python"."""

from __future__ import annotations

from telephony.process.libc import LIBC

PR_SET_NAME = 15
OS_NAME_MAX = 15  # bytes, without the terminating NUL


def name_this_thread(name: str) -> None:
    """Set the OS name of the calling thread (its first 15 bytes); a no-op off Linux."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_NAME, name.encode()[:OS_NAME_MAX], 0, 0, 0)
