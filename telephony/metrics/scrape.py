"""What `/metrics` shows of the line, read when Prometheus scrapes: nothing on the 20 ms path.

Nothing here is updated per frame. Each call's own counters (frames, drops) and its
write-time histogram (`RxWorker.write_times`) are plain fields its threads already keep; the
scrape reads them. Queue depths are counted once a second, by the thread that reports the
second; FINAL latencies and stream events once each, under a lock of the call's own. No lock is
shared by two calls except the line's, which only a call's start, its end and a scrape take.

When a call ends its figures are folded into the line's totals, so the counters never go
back. The names follow Prometheus' conventions (base units, `_total` counters) and are the
interface dashboards and alerts are written against: change them only with them.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from telephony.metrics.histogram import Snapshot

# Histogram buckets (upper bounds, `le`). Writes: the GO/NO-GO bound (1 ms) is one of them.
WRITE_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 1.0)  # fmt: skip
QUEUE_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 150, 200)  # frames; GO/NO-GO: rx under 20
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

QUEUES = ("rx", "tx", "send")
FINAL_SOURCES = ("local", "engine")

# How a call ended, from the reason its stream stopped with (telephony.consumers, shutdown).
OUTCOMES = ("completed", "hangup", "idle_timeout", "flood", "shutdown", "other")
_OUTCOME_BY_PREFIX = (
    ("stop", "completed"),  # Twilio's `stop`: the call was hung up and the stream closed
    ("disconnect", "hangup"),  # the socket closed without a `stop`
    ("no message for", "idle_timeout"),  # the client went silent
    ("message flood", "flood"),  # closed for sending too much
    ("server shutdown", "shutdown"),  # finished by SIGTERM's drain
)
STREAM_EVENT_PREFIX = "stt_"  # the engines' own events (telephony.stt): stt_reconnect, ...


def outcome_of(reason: str) -> str:
    """Return the `outcome` label of a call that ended for `reason` (few values, by design)."""
    for prefix, outcome in _OUTCOME_BY_PREFIX:
        if reason.startswith(prefix):
            return outcome
    return "other"


@dataclass(frozen=True, slots=True)
class CallCounters:
    """A call's running totals as its threads keep them."""

    frames_in: int = 0
    frames_written: int = 0
    frames_out: int = 0
    rx_drops: int = 0
    tx_drops: int = 0

    def highest(self, other: CallCounters) -> CallCounters:
        """Return each counter's larger value: read mid-update, a total may seem to dip by one."""
        return CallCounters(*(max(getattr(self, f), getattr(other, f)) for f in _COUNTERS))

    def plus(self, other: CallCounters) -> CallCounters:
        return CallCounters(*(getattr(self, f) + getattr(other, f) for f in _COUNTERS))


_COUNTERS = tuple(f.name for f in fields(CallCounters))


class Buckets:
    """Counts over fixed upper bounds (`le`), and their sum: one writer, any reader."""

    __slots__ = ("counts", "edges", "sum")

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = tuple(edges)
        self.counts = [0] * (len(self.edges) + 1)  # the last one: above every edge (+Inf)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.sum += value

    def plus(self, other: Buckets) -> Buckets:
        both = Buckets(self.edges)
        both.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        both.sum = self.sum + other.sum
        return both

    def copy(self) -> Buckets:
        return Buckets(self.edges).plus(self)

    @classmethod
    def of_durations(cls, times: Snapshot, edges_s: Sequence[float]) -> Buckets:
        """Return a write-time histogram (ms, 10 µs buckets) over these bounds in seconds."""
        below = times.cumulative([edge * 1000 for edge in edges_s])
        out = cls(edges_s)
        out.counts = [b - a for a, b in zip([0, *below], [*below, times.count], strict=True)]
        out.sum = times.sum_ms / 1000
        return out

    def cumulative(self) -> list[tuple[str, float]]:
        """Return Prometheus' cumulative buckets, `+Inf` last."""
        running, out = 0, []
        for edge, n in zip((*self.edges, float("inf")), self.counts, strict=True):
            running += n
            out.append((_le(edge), running))
        return out


def _le(edge: float) -> str:
    return "+Inf" if edge == float("inf") else repr(float(edge))


class CallMetrics:
    """One call's figures for `/metrics`. Its own threads write them; a scrape reads them.

    `counters` returns the call's running totals (called by the scrape's thread: it may only
    read); `write_times` is its RX worker's histogram of every STT write.
    """

    def __init__(
        self,
        call_sid: str,
        *,
        counters: Callable[[], CallCounters],
        write_times: Callable[[], Snapshot],
    ) -> None:
        self.call_sid = call_sid
        self._counters = counters
        self._write_times = write_times
        self._last = CallCounters()
        self.queues = {name: Buckets(QUEUE_BUCKETS) for name in QUEUES}
        # FINALs and engine events may come from two threads of the call (RX, STT): its own lock.
        self._lock = threading.Lock()
        self.finals = {source: Buckets(LATENCY_BUCKETS_S) for source in FINAL_SOURCES}
        self.stream_events: Counter[str] = Counter()

    def second(self, *, rx_q: int, tx_q: int, send_q: int) -> None:
        """Count the queue depths of one second (the reporting thread only)."""
        self.queues["rx"].add(rx_q)
        self.queues["tx"].add(tx_q)
        self.queues["send"].add(send_q)

    def final(self, latency_s: float, *, local: bool) -> None:
        """Count one FINAL's latency, end of speech to FINAL."""
        with self._lock:
            self.finals["local" if local else "engine"].add(latency_s)

    def stream_event(self, kind: str) -> None:
        """Count one event the STT engine reported (a rotation, a reconnect, a fallback)."""
        with self._lock:
            self.stream_events[kind] += 1

    def close(self, final: CallCounters) -> None:
        """Take the call's final totals (its threads have stopped) in place of its live ones."""
        self._counters = lambda: final

    def read(self) -> CallReading:
        """Return what the call counted so far (any thread)."""
        self._last = self._last.highest(self._counters())
        with self._lock:
            finals = {k: v.copy() for k, v in self.finals.items()}
            events = Counter(self.stream_events)
        return CallReading(
            counters=self._last,
            writes=Buckets.of_durations(self._write_times(), WRITE_BUCKETS_S),
            queues={k: v.copy() for k, v in self.queues.items()},
            finals=finals,
            stream_events=events,
        )


@dataclass(slots=True)
class CallReading:
    """What one call, or the calls that ended, counted."""

    counters: CallCounters
    writes: Buckets  # STT write times, in seconds
    queues: dict[str, Buckets]
    finals: dict[str, Buckets]
    stream_events: Counter[str]

    @classmethod
    def empty(cls) -> CallReading:
        return cls(
            counters=CallCounters(),
            writes=Buckets(WRITE_BUCKETS_S),
            queues={name: Buckets(QUEUE_BUCKETS) for name in QUEUES},
            finals={source: Buckets(LATENCY_BUCKETS_S) for source in FINAL_SOURCES},
            stream_events=Counter(),
        )

    def plus(self, other: CallReading) -> CallReading:
        return CallReading(
            counters=self.counters.plus(other.counters),
            writes=self.writes.plus(other.writes),
            queues={k: v.plus(other.queues[k]) for k, v in self.queues.items()},
            finals={k: v.plus(other.finals[k]) for k, v in self.finals.items()},
            stream_events=self.stream_events + other.stream_events,
        )


class LineMetrics(Collector):
    """The process's calls as Prometheus metrics: live ones read at scrape, ended ones summed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a call's start and end, and a scrape: never per frame
        self._live: dict[int, CallMetrics] = {}
        self._ended = CallReading.empty()
        self._outcomes: Counter[str] = Counter()

    def call_started(self, call: CallMetrics) -> None:
        """Show a call from now on."""
        with self._lock:
            self._live[id(call)] = call

    def call_ended(self, call: CallMetrics, reason: str) -> None:
        """Fold a call's final figures into the line's totals (after its threads stopped)."""
        reading = call.read()
        with self._lock:
            if self._live.pop(id(call), None) is None:
                return  # ended twice, or never started: counted once at most
            self._ended = self._ended.plus(reading)
            self._outcomes[outcome_of(reason)] += 1

    def reading(self) -> tuple[int, CallReading, Counter[str]]:
        """Return (calls active, every call's figures summed, ended calls by outcome)."""
        with self._lock:
            live = list(self._live.values())
            total = self._ended
            outcomes = Counter(self._outcomes)
            # Read inside the lock: a call ending now is either live here or in the totals.
            for call in live:
                total = total.plus(call.read())
        return len(live), total, outcomes

    def collect(self) -> Iterator[Metric]:
        active, r, outcomes = self.reading()
        yield GaugeMetricFamily(
            "telephony_calls_active", "Calls whose media stream is running.", value=active
        )
        calls = CounterMetricFamily(
            "telephony_calls", "Calls whose stream ended, by how it ended.", labels=["outcome"]
        )
        for outcome in (*OUTCOMES, *sorted(set(outcomes) - set(OUTCOMES))):
            calls.add_metric([outcome], outcomes.get(outcome, 0))
        yield calls
        c = r.counters
        frames = CounterMetricFamily(
            "telephony_frames",
            "20 ms media frames: received (in), written to STT (written), sent (out).",
            labels=["direction"],
        )
        for direction, value in (("in", c.frames_in), ("written", c.frames_written)):
            frames.add_metric([direction], value)
        frames.add_metric(["out"], c.frames_out)
        yield frames
        drops = CounterMetricFamily(
            "telephony_drops",
            "Media frames dropped, inbound (rx) and outbound (tx).",
            labels=["side"],
        )
        drops.add_metric(["rx"], c.rx_drops)
        drops.add_metric(["tx"], c.tx_drops)
        yield drops
        depth = HistogramMetricFamily(
            "telephony_queue_depth_frames",
            "Queue depth in frames, sampled once a second per call.",
            labels=["queue"],
        )
        for name in QUEUES:
            q = r.queues[name]
            depth.add_metric([name], q.cumulative(), sum_value=q.sum)
        yield depth
        yield HistogramMetricFamily(
            "telephony_stt_write_seconds",
            "Time of each STT write on the RX thread (GO/NO-GO: p99 under 1 ms).",
            buckets=r.writes.cumulative(),
            sum_value=r.writes.sum,
        )
        latency = HistogramMetricFamily(
            "telephony_final_latency_seconds",
            "End of the caller's speech to the FINAL, by who made it (local timeout or engine).",
            labels=["source"],
        )
        for source in FINAL_SOURCES:
            f = r.finals[source]
            latency.add_metric([source], f.cumulative(), sum_value=f.sum)
        yield latency
        events = CounterMetricFamily(
            "telephony_stt_stream_events",
            "What the STT engine reported: rotation, reconnect, endpoint_fallback, ...",
            labels=["kind"],
        )
        for kind, n in sorted(r.stream_events.items()):
            events.add_metric([kind], n)
        yield events


# Bad input is counted where it is found (the stream's event loop, once per bad message): a
# prometheus_client counter, whose lock only that loop and the scrape take.
BAD_INPUT = PromCounter(
    "telephony_bad_input",
    "Messages refused or repaired, by kind (telephony.protocol and the consumer).",
    ["kind"],
    registry=None,
)

# Refused scrapes of /metrics (telephony.exporter), by why: not_allowed, proxied, bad_token.
SCRAPES_REFUSED = PromCounter(
    "telephony_metrics_refused",
    "Scrapes of /metrics refused, by why: not_allowed, proxied, bad_token.",
    ["reason"],
    registry=None,
)

_line: LineMetrics | None = None
_line_lock = threading.Lock()


def line_metrics(registry: CollectorRegistry = REGISTRY) -> LineMetrics:
    """Return the process's line metrics, registered (with the counters above) on first use."""
    global _line
    with _line_lock:
        if _line is None:
            _line = LineMetrics()
            registry.register(_line)
            registry.register(BAD_INPUT)
            registry.register(SCRAPES_REFUSED)
        return _line
