"""The 20 ms next-deadline clock of the RX and TX workers, clock injectable.

Deadlines are `origin + n * period`, so float rounding never accumulates into drift; when the
worker falls more than `resync_s` behind (a GC pause, a stalled write), the schedule restarts
from now instead of firing a burst of late ticks to catch up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FRAME_S = 0.020  # one Twilio frame
RESYNC_S = 0.040  # late by more than two frames: restart the schedule


class Cadence:
    def __init__(
        self,
        period_s: float = FRAME_S,
        resync_s: float = RESYNC_S,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.period_s = period_s
        self.resync_s = resync_s
        self._clock = clock
        self._sleep = sleep
        self._origin = clock()
        self._n = 0
        self.resyncs = 0

    def now(self) -> float:
        return self._clock()

    @property
    def next_deadline(self) -> float:
        return self._origin + self._n * self.period_s

    def wait(self) -> float:
        """Sleep until the next deadline; return how late we are past it (seconds, >= 0)."""
        now = self._clock()
        deadline = self.next_deadline
        if now < deadline:
            self._sleep(deadline - now)
            now = self._clock()
        return max(0.0, now - deadline)

    def advance(self) -> bool:
        """Move to the next deadline; resync to now + period when far behind. True on resync."""
        self._n += 1
        now = self._clock()
        if now - self.next_deadline > self.resync_s:
            self._origin, self._n = now, 1
            self.resyncs += 1
            return True
        return False
