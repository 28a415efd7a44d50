"""The token bucket behind the flood limits (messages, frames and key presses per second)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """At most `burst` events at once and `rate_per_s` on average (a flood guard)."""

    __slots__ = ("_clock", "_level", "_stamp", "burst", "rate_per_s")

    def __init__(
        self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._level = burst
        self._stamp = clock()

    def take(self, n: float = 1.0) -> bool:
        """Spend `n` events (one by default); False, and nothing spent, if the budget is short."""
        now = self._clock()
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        if self._level < n:
            return False
        self._level -= n
        return True
