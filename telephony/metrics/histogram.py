"""Durations of one kind in fixed buckets, kept by one thread and read by any (pure, no locks).

The RX thread times every STT write of its call (`RxWorker`); the GO/NO-GO rule judges the p99
of all of them, and `/metrics` sums them into Prometheus buckets at scrape time. So an add must
cost next to nothing and take no lock: a multiplication, an index and a list increment, done
by the one thread that owns the call. A reader (the scrape, the end of the call) copies the
list, which the GIL makes whole; it may miss the add in progress, never see half of one.

Buckets are 10 µs wide up to `FINE_MS`, then coarse. A value is in bucket i when
i * 10 µs <= value < (i + 1) * 10 µs, so "at or above t" is exact for every t on a 10 µs step
(1 ms, 5 ms): the GO/NO-GO bound is one.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from telephony.metrics.stats import nearest_rank

STEP_MS = 0.01
FINE_MS = 10.0
FINE = round(FINE_MS / STEP_MS)  # 1,000 fine buckets: 8 KB per call
# Above FINE_MS, buckets start at these (ms); the last one takes the rest.
COARSE_MS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)


class Durations:
    """How many values (ms) fell in each bucket, their sum and the largest: one writer thread."""

    __slots__ = ("_coarse", "_fine", "max_ms", "sum_ms")

    def __init__(self) -> None:
        self._fine = [0] * FINE
        self._coarse = [0] * len(COARSE_MS)
        self.sum_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        """Count one value in ms (the owner thread only)."""
        i = int(ms * 100.0)  # 1 / STEP_MS, multiplied rather than divided
        if i < FINE:
            self._fine[i] += 1
        else:
            self._coarse[bisect.bisect_right(COARSE_MS, ms) - 1] += 1
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def snapshot(self) -> Snapshot:
        """Return a copy to read from any thread."""
        return Snapshot(list(self._fine), list(self._coarse), self.sum_ms, self.max_ms)


class Snapshot:
    """A copy of `Durations` to read: counts, percentiles, Prometheus buckets, a compact text."""

    __slots__ = ("coarse", "fine", "max_ms", "sum_ms")

    def __init__(
        self,
        fine: Sequence[int] | None = None,
        coarse: Sequence[int] | None = None,
        sum_ms: float = 0.0,
        max_ms: float = 0.0,
    ) -> None:
        self.fine = list(fine) if fine is not None else [0] * FINE
        self.coarse = list(coarse) if coarse is not None else [0] * len(COARSE_MS)
        self.sum_ms = sum_ms
        self.max_ms = max_ms

    @property
    def count(self) -> int:
        return sum(self.fine) + sum(self.coarse)

    def _running(self) -> list[int]:
        """Running totals over every bucket, fine then coarse (in C: a scrape stays cheap)."""
        return list(itertools.accumulate(itertools.chain(self.fine, self.coarse)))

    @staticmethod
    def _index(ms: float) -> int:
        """The first bucket whose lower edge is at least `ms` (on a 10 µs step below FINE_MS)."""
        if ms < FINE_MS:
            return max(0, math.ceil(ms / STEP_MS - 1e-6))
        return FINE + bisect.bisect_left(COARSE_MS, ms - 1e-9)

    @staticmethod
    def _lower_edge(index: int) -> float:
        return round(index * STEP_MS, 2) if index < FINE else COARSE_MS[index - FINE]

    def percentile(self, q: float) -> float:
        """Return the nearest-rank q-th percentile as its bucket's lower edge, in ms (0 if empty).

        The lower edge, so that `percentile(q) >= t` holds exactly when the value itself does
        for any t on a 10 µs step (above FINE_MS, to the coarse bucket).
        """
        running = self._running()
        if not running[-1]:
            return 0.0
        rank = nearest_rank(running[-1], q)
        return self._lower_edge(bisect.bisect_left(running, rank))

    def at_or_above(self, ms: float) -> int:
        """Return how many values were at least `ms` (exact on a 10 µs step below FINE_MS)."""
        running = self._running()
        index = self._index(ms)
        return running[-1] - (running[index - 1] if index else 0)

    def cumulative(self, edges_ms: Sequence[float]) -> list[int]:
        """Return, for each edge, how many values were below it (Prometheus `le`, to 10 µs)."""
        running = self._running()
        out = []
        for edge in edges_ms:
            index = self._index(edge)
            out.append(running[index - 1] if index else 0)
        return out

    def merge(self, other: Snapshot) -> Snapshot:
        """Return the two snapshots added together."""
        return Snapshot(
            [a + b for a, b in zip(self.fine, other.fine, strict=True)],
            [a + b for a, b in zip(self.coarse, other.coarse, strict=True)],
            self.sum_ms + other.sum_ms,
            max(self.max_ms, other.max_ms),
        )

    def encode(self) -> str:
        """Return the non-empty buckets as `index:count,...` (coarse ones after FINE), the sum
        and the maximum: `sum;max;buckets`, for a JSON field or a log line."""
        counts = [*self.fine, *self.coarse]
        buckets = ",".join(f"{i}:{n}" for i, n in enumerate(counts) if n)
        return f"{self.sum_ms:.3f};{self.max_ms:.3f};{buckets}"

    @classmethod
    def decode(cls, text: str) -> Snapshot:
        """Parse `encode` output; raise ValueError on anything else."""
        try:
            sum_ms, max_ms, buckets = text.split(";")
            counts = [0] * (FINE + len(COARSE_MS))
            for item in filter(None, buckets.split(",")):
                i, n = item.split(":")
                counts[int(i)] = int(n)
            return cls(counts[:FINE], counts[FINE:], float(sum_ms), float(max_ms))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not an encoded histogram: {text[:60]!r}") from exc
