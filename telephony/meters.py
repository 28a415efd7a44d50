"""Per-second RX/TX figures of one call and the operators' log lines (the rules: gonogo.py)."""

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SecondSample:
    """One call's figures for one second, as the `[RX]`/`[TX]` log lines show them."""

    call_sid: str
    second: int  # whole seconds since the stream started
    at: float  # wall-clock time (time.time()) of the tick
    fps_in: int  # media frames received in the last second
    rx_q: int  # RX queue depth at the tick
    rx_drops: int  # media frames dropped from rx_q in the last second
    rx_drops_total: int
    write_ms: float  # slowest STT write in the last second
    tx_fps: int  # frames sent in the last second (idle silence included)
    tx_q: int
    tx_drops: int
    tx_drops_total: int
    send_q: int  # frames waiting between the TX thread and the socket
    mark_rtt_ms: float | None = None  # mean mark round trip in the last second, if any came back

    def rx_line(self) -> str:
        return (
            f"[RX] call={self.call_sid} fps_in={self.fps_in} q={self.rx_q} "
            f"drops={self.rx_drops} write_ms={self.write_ms:.2f}"
        )

    def tx_line(self) -> str:
        return f"[TX] call={self.call_sid} fps={self.tx_fps} q={self.tx_q} drops={self.tx_drops}"


class IntervalHistogram:
    """|interval - period| between a worker's ticks, in 0.1 ms buckets (opt-in benchmark aid).

    Cheap enough for every tick (one subtraction and one list increment) and mergeable across
    calls through `encode`/`decode`, so a benchmark gets exact percentiles over all its calls.
    """

    BUCKET_MS = 0.1
    __slots__ = ("_counts", "_last", "max_ms", "period_s")

    def __init__(self, period_s: float = 0.020, max_ms: float = 200.0) -> None:
        self.period_s = period_s
        self._counts = [0] * (int(max_ms / self.BUCKET_MS) + 1)  # the last bucket takes the rest
        self._last: float | None = None
        self.max_ms = 0.0

    def tick(self, t: float) -> None:
        """Record a tick at clock time `t` (seconds)."""
        last, self._last = self._last, t
        if last is None:
            return
        deviation_ms = abs(t - last - self.period_s) * 1000.0
        if deviation_ms > self.max_ms:
            self.max_ms = deviation_ms
        self._counts[min(int(deviation_ms / self.BUCKET_MS), len(self._counts) - 1)] += 1

    @property
    def count(self) -> int:
        return sum(self._counts)

    def percentile(self, q: float) -> float:
        """The q-th percentile (nearest rank) in ms, to the bucket's upper edge (0 if empty)."""
        return histogram_percentile(dict(enumerate(self._counts)), q, self.BUCKET_MS)

    def encode(self) -> str:
        """The non-empty buckets as `index:count,...` (for a log line)."""
        return ",".join(f"{i}:{c}" for i, c in enumerate(self._counts) if c)


def decode_histogram(text: str) -> dict[int, int]:
    """Parse `IntervalHistogram.encode` output back into {bucket: count}."""
    pairs = (item.split(":") for item in text.split(",") if item)
    return {int(i): int(c) for i, c in pairs}


def histogram_percentile(counts: dict[int, int], q: float, bucket_ms: float = 0.1) -> float:
    """The q-th percentile (nearest rank) of a {bucket: count} histogram, in ms (upper edge)."""
    total = sum(counts.values())
    if not total:
        return 0.0
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return (index + 1) * bucket_ms
    return (max(counts) + 1) * bucket_ms
