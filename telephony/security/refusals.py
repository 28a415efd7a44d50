"""Refusals logged at a bounded rate: the first of each kind at once, then one summary line.

Whoever can reach the line can make it refuse things as fast as the network allows (unsigned
webhooks, replayed WebSocket upgrades, starts with bad tokens). One log line per refusal would
let them fill the disk and the log pipeline: here the first refusal of each kind in a window is
logged with its detail, the rest are only counted, and a summary line with the counts by kind
is written when the window closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

Schedule = Callable[[float, Callable[[], None]], None]


def _timer(delay_s: float, action: Callable[[], None]) -> None:
    """Run `action` once, `delay_s` from now, in a short-lived daemon thread."""
    timer = threading.Timer(delay_s, action)
    timer.name = "refusal-summary"
    timer.daemon = True
    timer.start()


class RefusalLog:
    """Log refusals of one sort (`what`) at a bounded rate; safe from any thread."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule = _timer,
    ) -> None:
        self.logger = logger
        self.what = what
        self.window_s = window_s
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._logged: set[str] = set()  # kinds whose first refusal this window was logged
        self._quiet: Counter[str] = Counter()  # refusals counted, not logged, this window
        self._flush_pending = False
        self.total: Counter[str] = Counter()  # every refusal since start, by kind

    def refused(self, kind: str, detail: str) -> None:
        """Count one refusal; log it if it is the first of its kind in this window."""
        with self._lock:
            now = self._clock()
            if self._window_start is None or now - self._window_start >= self.window_s:
                summary = self._close_window()
                self._window_start = now
            else:
                summary = None
            self.total[kind] += 1
            first = kind not in self._logged
            schedule = False
            if first:
                self._logged.add(kind)
            else:
                self._quiet[kind] += 1
                schedule = not self._flush_pending
                self._flush_pending = True
        if summary:
            self.logger.warning(summary)
        if first:
            self.logger.warning("%s refused: %s: %s", self.what, kind, detail)
        elif schedule:
            self._schedule(self.window_s, self.flush)

    def flush(self) -> None:
        """Write the summary of the window if it is over (a timer calls this at its end)."""
        with self._lock:
            now = self._clock()
            if self._window_start is not None and now - self._window_start < self.window_s:
                return  # a newer window began since the timer was set: its own timer writes it
            summary = self._close_window()
            self._window_start = None
        if summary:
            self.logger.warning(summary)

    def _close_window(self) -> str | None:
        """End the window (with the lock held); return its summary line if anything was quiet."""
        quiet, self._quiet = self._quiet, Counter()
        self._logged = set()
        self._flush_pending = False
        if not quiet:
            return None
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in quiet.most_common())
        return (
            f"{self.what}: {sum(quiet.values()):,} more refused in the last "
            f"{self.window_s:g} s, not logged one by one ({kinds})"
        )
