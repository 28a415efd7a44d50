"""Marks sent to Twilio and their echoes: round trip per mark, and marks that never came back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class MarkTracker:
    """Thread-safe: TX records sends, the consumer's loop records echoes, RX reads each second."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}
        self._window_rtts: list[float] = []
        self.sent = 0
        self.echoed = 0
        self.last_echoed: str | None = None

    def mark_sent(self, name: str) -> None:
        with self._lock:
            self._pending[name] = self._clock()
            self.sent += 1

    def mark_echoed(self, name: str) -> float | None:
        """Record an echo; return the round trip in ms, or None for a mark we never sent."""
        with self._lock:
            sent_at = self._pending.pop(name, None)
            if sent_at is None:
                return None
            rtt_ms = (self._clock() - sent_at) * 1000.0
            self._window_rtts.append(rtt_ms)
            self.echoed += 1
            self.last_echoed = name
            return rtt_ms

    def overdue(self, timeout_s: float) -> list[str]:
        """Pop and return marks sent more than `timeout_s` ago that were never echoed."""
        with self._lock:
            limit = self._clock() - timeout_s
            late = [name for name, sent_at in self._pending.items() if sent_at < limit]
            for name in late:
                del self._pending[name]
            return late

    def take_window_rtt_ms(self) -> float | None:
        """Mean round trip of the marks echoed since the last call (None if none)."""
        with self._lock:
            rtts, self._window_rtts = self._window_rtts, []
        return sum(rtts) / len(rtts) if rtts else None

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending)
