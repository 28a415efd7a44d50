"""Statistics shared by the line, its tools and its benchmarks (pure, no I/O).

One rule for every percentile here: the nearest rank (the smallest value with at least q % of
the values at or below it), so a p99 over 100 seconds is the worst but one, and figures from
the meters, the simulator and the GO/NO-GO check are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def nearest_rank(count: int, q: float) -> int:
    """Return the 1-based rank of the q-th percentile (0-100) among `count` values."""
    return min(count, max(1, math.ceil(q / 100 * count)))


def percentile(values: Iterable[float], q: float) -> float:
    """Return the q-th percentile (0-100) of `values` by the nearest-rank method."""
    ordered: Sequence[float] = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[nearest_rank(len(ordered), q) - 1]


class IntervalHistogram:
    """|interval - period| between successive events, in 0.1 ms buckets.

    The one interval statistic: the RX worker's tick cadence (opt-in, RX_CADENCE_STATS) and the
    simulated caller's frame arrivals both use it. Cheap enough for every tick (a subtraction
    and a list increment), bounded in memory however long the call, and mergeable across calls
    through `encode`/`decode_histogram`, so a benchmark gets exact percentiles over all calls.
    Percentiles are given to their bucket's upper edge; the maximum is exact.
    """

    BUCKET_MS = 0.1
    __slots__ = ("_counts", "_last", "max_ms", "period_s")

    def __init__(self, period_s: float = 0.020, max_ms: float = 200.0) -> None:
        self.period_s = period_s
        self._counts = [0] * (int(max_ms / self.BUCKET_MS) + 1)  # the last bucket takes the rest
        self._last: float | None = None
        self.max_ms = 0.0

    def tick(self, t: float) -> None:
        """Record an event at clock time `t` (seconds)."""
        last, self._last = self._last, t
        if last is None:
            return
        deviation_ms = abs(t - last - self.period_s) * 1000.0
        if deviation_ms > self.max_ms:
            self.max_ms = deviation_ms
        self._counts[min(int(deviation_ms / self.BUCKET_MS), len(self._counts) - 1)] += 1

    @property
    def count(self) -> int:
        """Return how many intervals were recorded."""
        return sum(self._counts)

    def percentile(self, q: float) -> float:
        """Return the q-th percentile in ms, to the bucket's upper edge (0 if empty)."""
        return histogram_percentile(dict(enumerate(self._counts)), q, self.BUCKET_MS)

    def summary(self) -> tuple[float, float, float]:
        """Return (p50, p99, max) in ms (zeros before two events)."""
        return (self.percentile(50), self.percentile(99), self.max_ms)

    def encode(self) -> str:
        """Return the non-empty buckets as `index:count,...` (for a log line)."""
        return ",".join(f"{i}:{c}" for i, c in enumerate(self._counts) if c)


def decode_histogram(text: str) -> dict[int, int]:
    """Parse `IntervalHistogram.encode` output back into {bucket: count}."""
    pairs = (item.split(":") for item in text.split(",") if item)
    return {int(i): int(c) for i, c in pairs}


def histogram_percentile(counts: Mapping[int, int], q: float, bucket_ms: float = 0.1) -> float:
    """Return the q-th percentile of a {bucket: count} histogram in ms (upper edge; 0 if empty)."""
    total = sum(counts.values())
    if not total:
        return 0.0
    rank = nearest_rank(total, q)
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return (index + 1) * bucket_ms
    raise AssertionError("unreachable: the ranks add up to the total")


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Return the least-squares slope of y over x (0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
