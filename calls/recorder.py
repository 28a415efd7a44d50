"""The one place calls reach the database: a bounded queue drained by one writer thread.

The call path (the consumer's event loop, the RX/TX threads) hands rows to the recorder and
returns at once; nothing it calls touches the database. The writer batches what is queued into
one transaction (`bulk_create`), retries with backoff while the database is slow or down, and
when the queue is full sheds partials and metric samples first, oldest first. FINALs,
revisions, call rows and events are never shed; they are refused only if the whole queue is
already FINALs, call rows and events (the database has been gone for a long while), and that
is counted and logged as lost.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone

from calls import services
from telephony.metrics.meters import SecondSample
from telephony.turns.transcript import TranscriptEvent

logger = logging.getLogger(__name__)

# Kinds of queued item. Only the first two may be shed when the queue is full.
PARTIAL = "partial"
METRIC = "metric"
SHEDDABLE = frozenset({PARTIAL, METRIC})
ANSWERED, STARTED, EVENT, GREETING, ENDED = "answered", "started", "event", "greeting", "ended"
TRANSCRIPT_KINDS = frozenset({"partial", "final", "revision"})

WRITER_THREAD_NAME = "calls-recorder"
IDLE_CLOSE_S = 5.0  # an idle writer gives its DB connection back after this long
RETRY_FIRST_S = 0.05
DOWN_LOG_EVERY_S = 30.0  # an outage is logged when it starts, then this often


@dataclass(slots=True)
class _Item:
    seq: int
    kind: str
    call_sid: str
    payload: Any


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


@dataclass(slots=True)
class _Ops:
    """One batch sorted into the writes it needs, in the order they must happen."""

    answered: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[TranscriptEvent] = field(default_factory=list)
    samples: list[SecondSample] = field(default_factory=list)
    events: list[services.EventData] = field(default_factory=list)
    greetings: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)


def _as_datetime(value: datetime | float) -> datetime:
    return value if isinstance(value, datetime) else services.from_timestamp(value)


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
        before_write: Callable[[Sequence[_Item]], None] | None = None,
        start: bool = True,
    ) -> None:
        self.maxsize = maxsize
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.retry_max_s = retry_max_s
        self.heartbeat_s = heartbeat_s
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._wall_clock = wall_clock
        # A test seam: called on the writer thread before each write attempt (may block or raise).
        self._before_write = before_write

        self._cond = threading.Condition(threading.Lock())
        self._keep: deque[_Item] = deque()  # never shed
        self._shed: deque[_Item] = deque()  # partials and samples, shed oldest first
        self._seq = 0
        self._inflight_min: int | None = None  # lowest seq of the batch being written
        self._last_seq: dict[str, int] = {}  # per call: the last seq queued for it
        self._waiting_flushes = 0
        self._stopping = False
        self._stop_deadline = float("inf")

        self._enqueued: Counter[str] = Counter()
        self._written: Counter[str] = Counter()
        self._shed_total: Counter[str] = Counter()
        self._lost: Counter[str] = Counter()
        self._shed_by_call: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._logged: defaultdict[str, set[str]] = defaultdict(set)  # kinds logged, by call
        self._unlogged: list[tuple[str, str, str]] = []  # (what, call, kind) for the writer to log
        self._max_queued = 0
        self._batches = 0
        self._retries = 0

        # Writer-thread state only.
        self._call_ids: dict[str, int] = {}
        self._seen_at: dict[str, float] = {}
        self._down_since: float | None = None  # when the current outage began
        self._down_logged_at = 0.0

        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        if start:
            self.start()

    # --- the call path's API: never blocks, never touches the database ------------------------

    def call_answered(
        self,
        *,
        call_sid: str,
        account_sid: str = "",
        from_number: str = "",
        to_number: str = "",
        at: datetime | None = None,
    ) -> None:
        """Queue the webhook's call row (for callers that must not wait on the database)."""
        self._put(
            ANSWERED,
            call_sid,
            {
                "call_sid": call_sid,
                "account_sid": account_sid,
                "from_number": from_number,
                "to_number": to_number,
                "at": at or self._wall_clock(),
            },
        )

    def stream_started(
        self,
        *,
        call_sid: str,
        stream_sid: str,
        account_sid: str = "",
        stt_engine: str = "",
        stt_language: str = "",
        started_at: datetime | float,
    ) -> None:
        """Queue the stream's start: the call row becomes active (created if missing)."""
        self._put(
            STARTED,
            call_sid,
            {
                "call_sid": call_sid,
                "stream_sid": stream_sid,
                "account_sid": account_sid,
                "stt_engine": stt_engine,
                "stt_language": stt_language,
                "started_at": started_at,
            },
        )

    def transcript(self, event: TranscriptEvent) -> None:
        """Queue a partial, FINAL or revision."""
        self._put(event.kind, event.call_sid, event)

    def metric(self, sample: SecondSample) -> None:
        """Queue one second's figures."""
        self._put(METRIC, sample.call_sid, sample)

    def event(
        self,
        *,
        call_sid: str,
        kind: str,
        detail: str = "",
        data: Mapping[str, Any] | None = None,
        at: datetime | float | None = None,
    ) -> None:
        """Queue a call event (dtmf, mark, clear, error, ...)."""
        self._put(
            EVENT,
            call_sid,
            {
                "kind": kind,
                "detail": detail,
                "data": dict(data or {}),
                "at": self._wall_clock() if at is None else at,  # when it happened, not written
            },
        )

    def greeting_played(self, *, call_sid: str, at: datetime | float) -> None:
        """Queue the time the greeting finished playing."""
        self._put(GREETING, call_sid, {"call_sid": call_sid, "at": at})

    def stream_ended(
        self,
        *,
        call_sid: str,
        reason: str,
        ended_at: datetime | float,
        totals: Mapping[str, Any],
        status: str = "ended",
    ) -> None:
        """Queue the end of the stream with its totals; the verdict is judged when written."""
        self._put(
            ENDED,
            call_sid,
            {
                "call_sid": call_sid,
                "reason": reason,
                "ended_at": ended_at,
                "totals": dict(totals),
                "status": status,
            },
        )

    def flush(self, call_sid: str | None = None, timeout: float = 2.0) -> bool:
        """Wait until what is queued now (for one call, or all) is written; False on timeout."""
        if threading.current_thread() is self._thread:
            return False  # the writer cannot wait for itself
        deadline = self._clock() + timeout
        with self._cond:
            target = self._seq if call_sid is None else self._last_seq.get(call_sid, 0)
            if self._done_through() >= target:
                return True
            self._waiting_flushes += 1
            self._cond.notify_all()  # cut the writer's linger short
            try:
                while self._done_through() < target:
                    remaining = deadline - self._clock()
                    # A wait that times out ends the flush even if the clock stands still.
                    if remaining <= 0 or not self._cond.wait(remaining):
                        return self._done_through() >= target
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

    def stats(self) -> RecorderStats:
        """Return a snapshot of the counters."""
        with self._cond:
            return RecorderStats(
                queued=len(self._keep) + len(self._shed),
                max_queued=self._max_queued,
                enqueued=dict(self._enqueued),
                written=dict(self._written),
                shed=dict(self._shed_total),
                lost=dict(self._lost),
                batches=self._batches,
                retries=self._retries,
            )

    def shed_counts(self, call_sid: str) -> dict[str, int]:
        """Return what was shed for a call still running (ended calls keep it in `Call.shed`)."""
        with self._cond:
            return dict(self._shed_by_call.get(call_sid, {}))

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

    # --- the queue ----------------------------------------------------------------------------

    def _put(self, kind: str, call_sid: str, payload: Any) -> None:
        with self._cond:
            size = len(self._keep) + len(self._shed)
            if size >= self.maxsize:
                if self._shed:
                    old = self._shed.popleft()
                    self._count_shed(old.kind, old.call_sid)
                    size -= 1
                elif kind in SHEDDABLE:
                    self._count_shed(kind, call_sid)
                    return
                else:
                    self._lost[kind] += 1
                    self._note_once("lost", call_sid, kind)
                    return
            self._seq += 1
            item = _Item(self._seq, kind, call_sid, payload)
            (self._shed if kind in SHEDDABLE else self._keep).append(item)
            self._last_seq[call_sid] = self._seq
            self._enqueued[kind] += 1
            size += 1
            self._max_queued = max(self._max_queued, size)
            # Wake the writer only when it may be waiting for work or a full batch: a wake-up
            # per row would cut every linger short and turn batches back into single rows.
            if size == 1 or size == self.batch_size:
                self._cond.notify_all()

    def _count_shed(self, kind: str, call_sid: str) -> None:
        self._shed_total[kind] += 1
        self._shed_by_call[call_sid][kind] += 1
        self._note_once("shed", call_sid, kind)

    def _note_once(self, what: str, call_sid: str, kind: str) -> None:
        # Logged by the writer, not here: a caller's thread must not wait on a log handler.
        if kind not in self._logged[call_sid]:
            self._logged[call_sid].add(kind)
            self._unlogged.append((what, call_sid, kind))

    def _done_through(self) -> int:
        """Return the highest seq such that every item up to it is written, shed or lost."""
        pending = [s for s in (self._inflight_min,) if s is not None]
        pending += [q[0].seq for q in (self._keep, self._shed) if q]
        return min(pending) - 1 if pending else self._seq

    def _take(self) -> list[_Item]:
        """Take the oldest items across both deques, in the order they were queued."""
        batch: list[_Item] = []
        keep, shed = self._keep, self._shed
        while len(batch) < self.batch_size and (keep or shed):
            if not shed or (keep and keep[0].seq < shed[0].seq):
                batch.append(keep.popleft())
            else:
                batch.append(shed.popleft())
        if batch:
            self._inflight_min = batch[0].seq
        return batch

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
                        logger.warning("recorder: closing an idle connection failed: %s", exc)
                    continue
                self._log_pending()
                try:
                    self._write(batch)
                    # With DEBUG on, Django keeps the last 9,000 queries of each connection (a
                    # request's are cleared when the next request starts; this thread has none):
                    # the batches' SQL would stay in memory for as long as the process runs.
                    connection.queries_log.clear()
                except Exception:  # the writer must outlive any bug in one batch
                    logger.exception("recorder: batch of %d rows lost", len(batch))
                    with self._cond:
                        for item in batch:
                            self._lost[item.kind] += 1
                self._finish(batch)
        finally:
            self._log_pending()
            connection.close()

    def _next_batch(self) -> list[_Item] | None:
        """Wait for work and return a batch; [] after an idle spell; None when stopped."""
        with self._cond:
            if not (self._keep or self._shed):
                if self._stopping:
                    return None
                self._cond.wait(IDLE_CLOSE_S)
                if not (self._keep or self._shed):
                    return None if self._stopping else []
            # Linger a little so rows arrive in batches rather than one transaction each.
            deadline = self._clock() + self.linger_s
            while (
                len(self._keep) + len(self._shed) < self.batch_size
                and not self._waiting_flushes
                and not self._stopping
            ):
                remaining = deadline - self._clock()
                if remaining <= 0 or not self._cond.wait(remaining):
                    break
            return self._take()

    def _finish(self, batch: list[_Item]) -> None:
        with self._cond:
            self._inflight_min = None
            self._batches += 1
            for item in batch:
                if item.kind == ENDED and self._last_seq.get(item.call_sid) == item.seq:
                    # The call's last row is written: forget it (flush() then returns at once).
                    del self._last_seq[item.call_sid]
                    self._shed_by_call.pop(item.call_sid, None)
                    self._logged.pop(item.call_sid, None)
            self._cond.notify_all()

    def _log_pending(self) -> None:
        with self._cond:
            pending, self._unlogged = self._unlogged, []
        for what, call_sid, kind in pending:
            if what == "shed":
                logger.warning(
                    "recorder queue full: shedding %s rows of call=%s (further ones counted)",
                    kind,
                    call_sid,
                )
            else:
                logger.error(
                    "recorder queue full of rows it must keep: %s of call=%s LOST (counted)",
                    kind,
                    call_sid,
                )

    def _write(self, batch: list[_Item]) -> None:
        if self._write_with_retry(batch):
            return
        # Something in the batch is refused by the database itself (bad data, not an outage):
        # write the rows one by one so one bad row does not take the others with it.
        for item in batch:
            if not self._write_with_retry([item]):
                logger.error("recorder: dropped a %s row of call=%s", item.kind, item.call_sid)
                with self._cond:
                    self._lost[item.kind] += 1

    def _write_with_retry(self, items: list[_Item]) -> bool:
        """Write, retrying while the database is unreachable; False if it refuses the rows."""
        delay = RETRY_FIRST_S
        while True:
            try:
                if self._before_write is not None:
                    self._before_write(items)
                self._write_once(items)
                if self._down_since is not None:
                    logger.warning(
                        "recorder: database back after %.1f s", self._clock() - self._down_since
                    )
                    self._down_since = None
                return True
            except (OperationalError, InterfaceError) as exc:
                now = self._clock()
                if now >= self._stop_deadline:
                    logger.error("recorder stopped, database still down: %d rows lost", len(items))
                    with self._cond:
                        for item in items:
                            self._lost[item.kind] += 1
                    return True
                with self._cond:
                    self._retries += 1
                    queued = len(self._keep) + len(self._shed)
                if self._down_since is None or now - self._down_logged_at >= DOWN_LOG_EVERY_S:
                    self._down_since = self._down_since if self._down_since is not None else now
                    self._down_logged_at = now
                    logger.warning(
                        "recorder: database unavailable for %.1f s (%s); retrying, %d rows queued",
                        now - self._down_since,
                        exc,
                        queued,
                    )
                self._log_pending()
                connection.close()  # a broken connection is not reused; the next try reconnects
                self._stop_event.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
            except DatabaseError:
                logger.exception("recorder: the database refused %d rows", len(items))
                connection.close()
                return False

    def _sort(self, items: list[_Item]) -> _Ops:
        ops = _Ops()
        for item in items:
            p = item.payload
            if item.kind == ANSWERED:
                ops.answered.append(p)
            elif item.kind == STARTED:
                ops.started.append({**p, "started_at": _as_datetime(p["started_at"])})
            elif item.kind in TRANSCRIPT_KINDS:
                ops.transcripts.append(p)
            elif item.kind == METRIC:
                ops.samples.append(p)
            elif item.kind == EVENT:
                ops.events.append(
                    services.EventData(
                        call_sid=item.call_sid,
                        kind=p["kind"],
                        detail=p["detail"],
                        data=p["data"],
                        at=_as_datetime(p["at"]),
                    )
                )
            elif item.kind == GREETING:
                ops.greetings.append({**p, "at": _as_datetime(p["at"])})
            elif item.kind == ENDED:
                ops.ended.append({**p, "ended_at": _as_datetime(p["ended_at"])})
        return ops

    def _write_once(self, items: list[_Item]) -> None:
        ops = self._sort(items)
        ids: dict[str, int] = {}
        with transaction.atomic():
            for p in ops.answered:
                call = services.call_answered(**p)
                ids[call.call_sid] = call.pk
            for p in ops.started:
                call = services.call_stream_started(**p, process=self.process)
                ids[call.call_sid] = call.pk
            needed = {t.call_sid for t in ops.transcripts}
            needed |= {s.call_sid for s in ops.samples}
            needed |= {e.call_sid for e in ops.events}
            needed -= ids.keys() | self._call_ids.keys()
            if needed:
                ids.update(services.call_ids_ensure(call_sids=needed, at=self._wall_clock()))
            known = {**self._call_ids, **ids}
            if ops.transcripts:
                services.transcripts_create(events=ops.transcripts, call_ids=known)
            seen: list[str] = []
            if ops.samples:
                services.metric_samples_create(samples=ops.samples, call_ids=known)
                seen = self._heartbeat(ops.samples, known)
            if ops.events:
                services.call_events_create(events=ops.events, call_ids=known)
            for p in ops.greetings:
                services.call_greeting_played(**p)
            if ops.ended:
                with self._cond:
                    shed = {
                        p["call_sid"]: dict(self._shed_by_call[p["call_sid"]]) for p in ops.ended
                    }
                for p in ops.ended:
                    services.call_ended(**p, shed=shed[p["call_sid"]])
        # Committed: only now may the ids be trusted across batches.
        self._call_ids.update(ids)
        now = self._clock()
        for call_sid in [*seen, *(p["call_sid"] for p in ops.started)]:
            self._seen_at[call_sid] = now
        for p in ops.ended:
            self._call_ids.pop(p["call_sid"], None)
            self._seen_at.pop(p["call_sid"], None)
        written: Counter[str] = Counter(item.kind for item in items)
        with self._cond:
            self._written.update(written)

    def _heartbeat(self, samples: list[SecondSample], ids: Mapping[str, int]) -> list[str]:
        """Note running calls as alive, at most once per `heartbeat_s` each; return which."""
        latest: dict[str, SecondSample] = {}
        for s in samples:
            if s.call_sid not in latest or s.second > latest[s.call_sid].second:
                latest[s.call_sid] = s
        now = self._clock()
        seen = []
        for call_sid, s in latest.items():
            if now - self._seen_at.get(call_sid, float("-inf")) < self.heartbeat_s:
                continue
            services.call_seen(
                call_id=ids[call_sid],
                at=services.from_timestamp(s.at),
                rx_drops=s.rx_drops_total,
                tx_drops=s.tx_drops_total,
            )
            seen.append(call_sid)
        return seen


_recorder: Recorder | None = None
_recorder_pid: int | None = None
_recorder_lock = threading.Lock()


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
