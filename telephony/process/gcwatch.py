"""Log the garbage collector's long pauses: every thread of every call stops while it runs.

A full collection walks every container object in the process, with the GIL held; with many
calls that can take long enough for the RX and TX deadlines to slip. An operator who sees a
burst of late ticks or a jump in `q` can find the cause here instead of guessing.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcWatch:
    """A `gc.callbacks` hook: times each collection and logs those over `threshold_ms`."""

    def __init__(self, threshold_ms: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.threshold_ms = threshold_ms
        self._clock = clock
        self._started: float | None = None
        self.longest_ms = 0.0
        self.long_pauses = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        if self._started is None:
            return
        pause_ms = (self._clock() - self._started) * 1000.0
        self._started = None
        self.longest_ms = max(self.longest_ms, pause_ms)
        if pause_ms >= self.threshold_ms:
            self.long_pauses += 1
            log.warning(
                "gc pause %.0f ms (generation %d, %d objects collected)",
                pause_ms,
                info.get("generation", -1),
                info.get("collected", 0),
            )


def install(threshold_ms: float) -> GcWatch:
    """Start watching this process's collections (once; a second call returns the first)."""
    for callback in gc.callbacks:
        if isinstance(callback, GcWatch):
            return callback
    watch = GcWatch(threshold_ms)
    gc.callbacks.append(watch)
    return watch
