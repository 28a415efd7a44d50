"""The one fake clock of the test suite: time that moves only when the test moves it."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    """A clock to inject wherever code takes `clock=` (call it for the time, in seconds).

    `advance` moves time on; `at` schedules an action (an arrival, a stop) that runs when time
    passes it, so a worker's loop can be driven in the test thread: pass `sleep=clock.sleep`
    and each sleep advances time and runs what fell due meanwhile.
    """

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` once time reaches `when`."""
        self._seq += 1
        self._due.append((when, self._seq, action))
        self._due.sort()

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, running the actions that fall due on the way."""
        end = self.now + seconds
        while self._due and self._due[0][0] <= end:
            when, _, action = self._due.pop(0)
            self.now = max(self.now, when)
            action()
        self.now = end

    def advance_ms(self, ms: float) -> None:
        """Move time on by `ms` milliseconds."""
        self.advance(ms / 1000.0)

    def sleep(self, seconds: float) -> None:
        """Stand in for `time.sleep`: advance instead of waiting."""
        self.advance(seconds)
