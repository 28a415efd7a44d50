"""The one place calls reach the database: a bounded queue drained by one writer thread.

The call path (the consumer's event loop, the RX/TX threads) hands rows to the recorder and
returns at once; nothing it calls touches the database. The queue (`calls.rowqueue`) sheds
partials and metric samples first when full, and never sheds FINALs, revisions, call rows or
events. The writer thread takes what is queued in batches, writes each in one transaction
(`calls.batch`), retries with backoff while the database is slow or down, and writes a batch
row by row when the database refuses it, so one bad row does not take the others with it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Concatenate, ParamSpec

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from calls.batch import BatchWriter
from calls.rowqueue import Item, RowQueue
from calls.rows import (
    METRIC,
    CallAnswer,
    EventData,
    GreetingPlayed,
    Row,
    StreamEnd,
    StreamStart,
    kind_of,
)
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent

log = logging.getLogger(__name__)

WRITER_THREAD_NAME = "calls-recorder"
IDLE_CLOSE_S = 5.0  # an idle writer gives its DB connection back after this long
RETRY_FIRST_S = 0.05
DOWN_LOG_EVERY_S = 30.0  # an outage is logged when it starts, then this often

P = ParamSpec("P")
_STAMPED = (CallAnswer, EventData)  # rows whose time, when not given, is when they are queued


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """What the recorder has done so far (counts by kind of row)."""

    queued: int
    max_queued: int
    enqueued: Mapping[str, int]
    written: Mapping[str, int]
    shed: Mapping[str, int]
    lost: Mapping[str, int]
    batches: int
    retries: int


def _queues(row_type: Callable[P, Row]) -> Callable[Concatenate[Recorder, P], None]:
    """Return a recorder method that takes a row's fields and queues the row."""

    def queue(self: Recorder, /, *args: P.args, **kwargs: P.kwargs) -> None:
        self.record(row_type(*args, **kwargs))

    name = getattr(row_type, "__name__", "row")
    queue.__doc__ = f"Queue a `{name}` row, given its fields."
    return queue


class Recorder:
    """A bounded queue of rows and the one named thread that writes them."""

    def __init__(
        self,
        *,
        maxsize: int = 50_000,
        batch_size: int = 500,
        linger_s: float = 0.05,
        retry_max_s: float = 5.0,
        heartbeat_s: float = 10.0,
        process: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = timezone.now,
        before_write: Callable[[Sequence[Item]], None] | None = None,
        start: bool = True,
    ) -> None:
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.retry_max_s = retry_max_s
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._wall_clock = wall_clock
        # A test seam: called on the writer thread before each write attempt (may block or raise).
        self._before_write = before_write

        # One lock for the queue and its ledger, shared by the callers and the writer.
        self._cond = threading.Condition(threading.Lock())
        self._queue = RowQueue(maxsize)
        self._waiting_flushes = 0
        self._stopping = False
        self._stop_deadline = float("inf")
        self._retries = 0

        # Writer-thread state only.
        self._batches = BatchWriter(
            process=self.process, heartbeat_s=heartbeat_s, clock=clock, wall_clock=wall_clock
        )
        self._down_since: float | None = None  # when the current outage began
        self._down_logged_at = 0.0

        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        if start:
            self.start()

    # --- the call path's API: never blocks, never touches the database ------------------------

    def record(self, row: Row) -> None:
        """Queue a row for the writer."""
        if isinstance(row, _STAMPED) and row.at is None:
            row = replace(row, at=self._wall_clock())  # when it happened, not when written
        self._put(kind_of(row), row)

    # The webhook's call row (for callers that must not wait on the database).
    call_answered = _queues(CallAnswer)
    # The stream's start: the call row becomes active (created if missing).
    stream_started = _queues(StreamStart)
    event = _queues(EventData)
    greeting_played = _queues(GreetingPlayed)
    # The end of the stream with its totals; the verdict is judged when written.
    stream_ended = _queues(StreamEnd)

    def transcript(self, event: TranscriptEvent) -> None:
        """Queue a partial, FINAL or revision."""
        self._put(event.kind, event)

    def metric(self, sample: SecondSample) -> None:
        """Queue one second's figures."""
        self._put(METRIC, sample)

    def _put(self, kind: str, row: Row) -> None:
        with self._cond:
            queued = self._queue.put(kind, row.call_sid, row)
            # Wake the writer only when it may be waiting for work or a full batch: a wake-up
            # per row would cut every linger short and turn batches back into single rows.
            if queued and len(self._queue) in (1, self.batch_size):
                self._cond.notify_all()

    def flush(self, call_sid: str | None = None, timeout: float = 2.0) -> bool:
        """Wait until what is queued now (for one call, or all) is written; False on timeout."""
        if threading.current_thread() is self._thread:
            return False  # the writer cannot wait for itself
        deadline = self._clock() + timeout
        with self._cond:
            target = self._queue.flush_target(call_sid)
            if self._queue.done_through() >= target:
                return True
            self._waiting_flushes += 1
            self._cond.notify_all()  # cut the writer's linger short
            try:
                while self._queue.done_through() < target:
                    remaining = deadline - self._clock()
                    # A wait that times out ends the flush even if the clock stands still.
                    if remaining <= 0 or not self._cond.wait(remaining):
                        return self._queue.done_through() >= target
                return True
            finally:
                self._waiting_flushes -= 1

    async def aflush(
        self,
        call_sid: str | None = None,
        timeout: float = 2.0,  # noqa: ASYNC109 - the blocking flush's own limit, run in a thread
    ) -> bool:
        """Flush from an event loop without blocking it."""
        return await asyncio.to_thread(self.flush, call_sid, timeout)

    # --- introspection and lifecycle ----------------------------------------------------------

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    def stats(self) -> RecorderStats:
        """Return a snapshot of the counters."""
        with self._cond:
            q = self._queue
            return RecorderStats(
                queued=len(q),
                max_queued=q.max_queued,
                enqueued=dict(q.enqueued),
                written=dict(q.written),
                shed=dict(q.shed),
                lost=dict(q.lost),
                batches=q.batches,
                retries=self._retries,
            )

    def shed_counts(self, call_sid: str) -> dict[str, int]:
        """Return what was shed for a call still running (ended calls keep it in `Call.shed`)."""
        with self._cond:
            return self._queue.shed_counts(call_sid)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            return
        # A daemon: a process must be able to exit while the database is down; stop() drains.
        self._thread = threading.Thread(target=self._run, name=WRITER_THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Write what is queued (trying for at most `timeout` s), then end the writer."""
        with self._cond:
            self._stopping = True
            self._stop_deadline = self._clock() + timeout
            self._cond.notify_all()
        self._stop_event.set()
        if self._thread is None:
            return False
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive()

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                if not batch:
                    try:
                        close_old_connections()  # idle: give the connection back
                    except Exception as exc:  # a broken connection must not end the writer
                        log.warning("recorder: closing an idle connection failed: %s", exc)
                    continue
                self._log_notes()
                try:
                    self._write(batch)
                    # With DEBUG on, Django keeps the last 9,000 queries of each connection (a
                    # request's are cleared when the next request starts; this thread has none):
                    # the batches' SQL would stay in memory for as long as the process runs.
                    connection.queries_log.clear()
                except Exception:  # the writer must outlive any bug in one batch
                    log.exception("recorder: batch of %d rows lost", len(batch))
                    self._count_lost(batch)
                with self._cond:
                    self._queue.finish(batch)
                    self._cond.notify_all()
        finally:
            self._log_notes()
            connection.close()

    def _next_batch(self) -> list[Item] | None:
        """Wait for work and return a batch; [] after an idle spell; None when stopped."""
        with self._cond:
            if not self._queue:
                if self._stopping:
                    return None
                self._cond.wait(IDLE_CLOSE_S)
                if not self._queue:
                    return None if self._stopping else []
            # Linger a little so rows arrive in batches rather than one transaction each.
            deadline = self._clock() + self.linger_s
            while (
                len(self._queue) < self.batch_size
                and not self._waiting_flushes
                and not self._stopping
            ):
                remaining = deadline - self._clock()
                if remaining <= 0 or not self._cond.wait(remaining):
                    break
            return self._queue.take(self.batch_size)

    def _log_notes(self) -> None:
        with self._cond:
            notes = self._queue.take_notes()
        for note in notes:
            if note.what == "shed":
                log.warning(
                    "recorder queue full: shedding %s rows of call=%s (further ones counted)",
                    note.kind,
                    note.call_sid,
                )
            else:
                log.error(
                    "recorder queue full of rows it must keep: %s of call=%s LOST (counted)",
                    note.kind,
                    note.call_sid,
                )

    def _count_lost(self, items: Sequence[Item]) -> None:
        with self._cond:
            self._queue.count_lost(items)

    def _write(self, batch: list[Item]) -> None:
        if self._write_with_retry(batch):
            return
        # Something in the batch is refused by the database itself (bad data, not an outage):
        # write the rows one by one so one bad row does not take the others with it.
        for item in batch:
            if not self._write_with_retry([item]):
                log.error("recorder: dropped a %s row of call=%s", item.kind, item.call_sid)
                self._count_lost([item])

    def _write_with_retry(self, items: list[Item]) -> bool:
        """Write, retrying while the database is unreachable; False if it refuses the rows."""
        delay = RETRY_FIRST_S
        while True:
            try:
                if self._before_write is not None:
                    self._before_write(items)
                self._batches.write([item.row for item in items], shed_of=self.shed_counts)
                with self._cond:
                    self._queue.count_written(items)
                if self._down_since is not None:
                    log.warning(
                        "recorder: database back after %.1f s", self._clock() - self._down_since
                    )
                    self._down_since = None
                return True
            except (OperationalError, InterfaceError) as exc:
                now = self._clock()
                if now >= self._stop_deadline:
                    log.error("recorder stopped, database still down: %d rows lost", len(items))
                    self._count_lost(items)
                    return True
                with self._cond:
                    self._retries += 1
                    queued = len(self._queue)
                if self._down_since is None or now - self._down_logged_at >= DOWN_LOG_EVERY_S:
                    self._down_since = self._down_since if self._down_since is not None else now
                    self._down_logged_at = now
                    log.warning(
                        "recorder: database unavailable for %.1f s (%s); retrying, %d rows queued",
                        now - self._down_since,
                        exc,
                        queued,
                    )
                self._log_notes()
                connection.close()  # a broken connection is not reused; the next try reconnects
                self._stop_event.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
            except DatabaseError:
                log.exception("recorder: the database refused %d rows", len(items))
                connection.close()
                return False


_recorder: Recorder | None = None
_recorder_pid: int | None = None
_recorder_lock = threading.Lock()


class RecorderMetrics(Collector):
    """The recorder's counts for /metrics (`telephony_recorder_*`), read when scraped.

    Reads the process's recorder if it has started; a scrape never starts one.
    """

    def collect(self) -> Iterator[Metric]:
        recorder = _recorder if _recorder_pid == os.getpid() else None
        stats = recorder.stats() if recorder is not None else None
        yield CounterMetricFamily(
            "telephony_recorder_shed",
            "Rows shed by the recorder's full queue (partials, per-second figures).",
            value=sum(stats.shed.values()) if stats else 0,
        )
        yield CounterMetricFamily(
            "telephony_recorder_lost",
            "Rows the recorder could not write or keep (FINALs, calls, events among them).",
            value=sum(stats.lost.values()) if stats else 0,
        )
        yield CounterMetricFamily(
            "telephony_recorder_retries",
            "Database writes the recorder retried (the database was slow or down).",
            value=stats.retries if stats else 0,
        )
        yield GaugeMetricFamily(
            "telephony_recorder_queue_rows",
            "Rows waiting for the recorder's writer.",
            value=stats.queued if stats else 0,
        )


_metrics_registered = False


def register_metrics(registry: CollectorRegistry = REGISTRY) -> None:
    """Show the recorder's counts on /metrics (once per process)."""
    global _metrics_registered
    with _recorder_lock:
        if not _metrics_registered:
            registry.register(RecorderMetrics())
            _metrics_registered = True


def get_recorder() -> Recorder:
    """Return the process-wide recorder, starting it on first use."""
    global _recorder, _recorder_pid
    with _recorder_lock:
        # A forked child inherits the object but not the thread: it needs its own.
        if _recorder is None or _recorder_pid != os.getpid():
            _recorder = Recorder(
                maxsize=settings.RECORDER_QUEUE_SIZE,
                batch_size=settings.RECORDER_BATCH_SIZE,
                linger_s=settings.RECORDER_LINGER_MS / 1000,
                retry_max_s=settings.RECORDER_RETRY_MAX_S,
                heartbeat_s=settings.RECORDER_HEARTBEAT_S,
            )
            _recorder_pid = os.getpid()
            atexit.register(_recorder.stop, 2.0)
        return _recorder
