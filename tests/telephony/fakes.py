"""Fake time for driving the workers' loops in the test thread (no sleeping)."""

from collections.abc import Callable


class FakeTime:
    """A clock whose `sleep` advances time and runs what is due meanwhile (arrivals, stops)."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        self._due.append((when, self._seq, action))
        self._due.sort()

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._due and self._due[0][0] <= end:
            when, _, action = self._due.pop(0)
            self.now = max(self.now, when)
            action()
        self.now = end
