"""Stream sockets accepted and not started yet: a bounded number per process, oldest out first.

The upgrade's signature covers only the fixed stream URL, so whoever has seen one signed upgrade
can open sockets at will. Each must send a valid `start` within `STREAM_START_TIMEOUT_S` (the
consumer's deadline), and at most `STREAM_MAX_PENDING` may wait for it at once. When a socket
arrives over that bound, the one that has waited longest is closed: Twilio sends `start` within
milliseconds of the upgrade, so the oldest waiting socket is the least likely to be Twilio's,
and refusing newcomers instead would let a few hundred idle sockets lock every real call out.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Protocol


class Waiting(Protocol):
    def evict(self) -> None:
        """Close this socket: too many are waiting for `start` (called on any thread)."""
        ...


class PendingStreams:
    """The sockets of this process waiting for `start`, in the order they were accepted."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        # Weak: a socket whose consumer went away without saying so is not waited for.
        self._waiting: weakref.WeakKeyDictionary[Waiting, None] = weakref.WeakKeyDictionary()

    def add(self, socket: Waiting) -> list[Waiting]:
        """Note a socket accepted; return the ones it pushes out (already forgotten here)."""
        with self._lock:
            self._waiting[socket] = None
            over = len(self._waiting) - max(1, self._limit())
            evicted = list(self._waiting)[:over] if over > 0 else []
            for old in evicted:
                self._waiting.pop(old, None)
        return evicted

    def remove(self, socket: Waiting) -> None:
        """The socket started, or is closing: it no longer waits."""
        with self._lock:
            self._waiting.pop(socket, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


def _setting() -> int:
    from django.conf import settings

    return int(settings.STREAM_MAX_PENDING)


pending_streams = PendingStreams(_setting)
