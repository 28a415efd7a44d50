"""The recording writer: one thread per process, writing every recorded call's file as it goes.

Every `interval_s` (or at once when a call ends) it takes what each call's tap holds, lays it
on the call's timeline and appends it to the call's spool file
(`<spool>/<CallSid>.<StreamSid>.wav.part`); the WAV header is brought up to date every
`sync_every_s`, so a crash loses that much at most. Memory per call is what a tap and a
timeline hold (seconds), never the call. When the call's tap is closed the file is finished,
renamed `.wav`, and handed to `store` on a thread of its own (storage may be slow: a remote
bucket); it is removed once stored, kept if storing failed. A spool file is locked (`flock`)
while its writer lives: a file found unlocked belongs to a process that is gone, and
`spooled_left_behind` finds such files so they can be stored at start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from telephony.media.audio import FRAME_BYTES, FRAME_MS
from telephony.process.osthread import name_this_thread
from telephony.recording.tap import RecordingTap
from telephony.recording.timeline import StereoTimeline
from telephony.recording.wavfile import CHANNELS, HEADER_BYTES, MulawWavWriter, repair

log = logging.getLogger(__name__)

WRITER_THREAD_NAME = "recording-writer"
STORE_THREAD_NAME = "recording-store"
PART = ".wav.part"
DONE = ".wav"
# A call whose tap has had nothing new for this long, and was never closed, is closed here: its
# session died without stopping (a bug), and the file must not stay open for ever.
ABANDONED_AFTER_S = 600.0


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished recording in the spool, ready to be stored."""

    call_sid: str
    stream_sid: str
    path: Path
    frames: int  # 20 ms slots of the call's timeline
    dropped: int  # frames the tap refused (full): silence in the file
    late: int  # frames that came after their slot was written: left out
    data_bytes: int
    complete: bool  # False: cut short by a process that died, recovered from its spool file

    @property
    def duration_ms(self) -> int:
        return self.frames * FRAME_MS


def spool_name(call_sid: str, stream_sid: str) -> str:
    """Return the spool file's name for a call's stream (both ids are checked SIDs)."""
    return f"{call_sid}.{stream_sid}"


class _Job:
    """One call being written."""

    def __init__(self, tap: RecordingTap, stream_sid: str, path: Path, max_lag: int) -> None:
        self.tap = tap
        self.stream_sid = stream_sid
        self.path = path
        self.timeline = StereoTimeline(max_lag_frames=max_lag)
        self.file: BinaryIO | None = None
        self.wav: MulawWavWriter | None = None
        self.last_sync = 0.0
        self.last_progress = 0.0
        self.failed = False

    def open(self, now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("w+b")
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.file = file
        self.wav = MulawWavWriter(file)
        self.last_sync = self.last_progress = now


class RecordingWriter:
    """Write every recorded call of this process to its spool file, then hand it to `store`."""

    def __init__(
        self,
        *,
        spool_dir: Path,
        store: Callable[[Finished], None],
        interval_s: float = 0.25,
        sync_every_s: float = 1.0,
        max_lag_frames: int = 500,
        clock: Callable[[], float] = time.monotonic,
        threaded: bool = True,
    ) -> None:
        """`threaded=False` starts no thread: the caller runs `run_once` and `store_ready`."""
        self.spool_dir = Path(spool_dir)
        self._store = store
        self.interval_s = interval_s
        self.sync_every_s = sync_every_s
        self.max_lag_frames = max_lag_frames
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._new: list[_Job] = []
        self._jobs: list[_Job] = []
        self._unfinished = 0  # calls added and not yet stored (or given up on)
        self._stores: queue.SimpleQueue[Finished | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._store_thread: threading.Thread | None = None
        self._running = True
        self._threaded = threaded
        self.stored = 0
        self.store_failures = 0

    # --- from the call path: return at once -------------------------------------------------------

    def add(self, tap: RecordingTap, *, stream_sid: str) -> None:
        """Start writing a call: its file is opened on the writer thread's next round."""
        path = self.spool_dir / (spool_name(tap.call_sid, stream_sid) + PART)
        job = _Job(tap, stream_sid, path, self.max_lag_frames)
        tap.on_close = self._wake.set
        with self._lock:
            self._new.append(job)
            self._unfinished += 1
            start = self._threaded and self._thread is None
            if start:
                self._thread = threading.Thread(
                    target=self._run, name=WRITER_THREAD_NAME, daemon=True
                )
                self._store_thread = threading.Thread(
                    target=self._store_loop, name=STORE_THREAD_NAME, daemon=True
                )
        if start:
            for thread in (self._thread, self._store_thread):
                if thread is not None:
                    thread.start()

    # --- waiting for it ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s until every call closed so far is written and stored."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._closed_unfinished() > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def _closed_unfinished(self) -> int:
        # Calls still running are not waited for: only those whose tap is closed.
        running = sum(1 for job in (*self._new, *self._jobs) if not job.tap.closed)
        return self._unfinished - running

    def active(self) -> int:
        """Calls being written (added, not yet finished)."""
        with self._lock:
            return len(self._new) + len(self._jobs)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the threads (tests; the process's own writer lives as long as the process)."""
        self._running = False
        self._wake.set()
        self._stores.put(None)
        for thread in (self._thread, self._store_thread):
            if thread is not None:
                thread.join(timeout)

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        name_this_thread(WRITER_THREAD_NAME)
        while self._running:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            try:
                self.run_once()
            except Exception:  # a bug here must not end the recordings of every later call
                log.exception("recording writer round failed")

    def run_once(self) -> int:
        """Write what every call's tap holds; finish the calls that ended. Returns bytes written."""
        with self._lock:
            new, self._new = self._new, []
        now = self._clock()
        for job in new:
            try:
                job.open(now)
            except OSError as exc:
                log.error("call=%s recording not written: %s", job.tap.call_sid, exc)
                self._give_up(job)
                continue
            self._jobs.append(job)
        written = 0
        for job in list(self._jobs):
            try:
                written += self._step(job, now)
            except OSError as exc:  # disk full, spool gone: this call's recording is lost
                log.error("call=%s recording failed: %s", job.tap.call_sid, exc)
                self._jobs.remove(job)
                if job.file is not None:
                    with contextlib.suppress(OSError):
                        job.file.close()
                self._give_up(job)
        return written

    def _step(self, job: _Job, now: float) -> int:
        tap, timeline, wav = job.tap, job.timeline, job.wav
        assert wav is not None
        closed = tap.closed  # read first: a tap closed after this waits for the next round
        left_next, right_next = tap.caller_next, tap.line_next  # before `take`: see tap.py
        timeline.add(*tap.take())
        if closed:
            upto = tap.end_slot if tap.end_slot is not None else max(left_next, right_next)
        else:
            upto = timeline.horizon(left_next, right_next)
        samples = timeline.emit(upto)
        if samples:
            wav.append(samples)
            job.last_progress = now
        if closed:
            self._finish(job)
        elif now - job.last_sync >= self.sync_every_s:
            wav.sync()
            job.last_sync = now
        elif now - job.last_progress > ABANDONED_AFTER_S:
            log.warning("call=%s recording abandoned (never closed); finishing it", tap.call_sid)
            tap.close(max(left_next, right_next))
        return len(samples)

    def _finish(self, job: _Job) -> None:
        self._jobs.remove(job)
        tap, wav = job.tap, job.wav
        assert wav is not None
        job.timeline.discard()  # past the end: TX keeps ticking while the call stops
        wav.close()
        done = job.path.with_name(job.path.name[: -len(PART)] + DONE)
        os.replace(job.path, done)
        finished = Finished(
            call_sid=tap.call_sid,
            stream_sid=job.stream_sid,
            path=done,
            frames=job.timeline.next_slot,
            dropped=tap.dropped,
            late=job.timeline.late,
            data_bytes=wav.data_bytes,
            complete=True,
        )
        if tap.dropped or job.timeline.late:
            log.warning(
                "call=%s recording: %d frame(s) dropped, %d late",
                tap.call_sid,
                tap.dropped,
                job.timeline.late,
            )
        self._stores.put(finished)

    def _give_up(self, job: _Job) -> None:
        with self._lock:
            self._unfinished -= 1
            self._idle.notify_all()

    # --- the store thread -------------------------------------------------------------------------

    def _store_loop(self) -> None:
        name_this_thread(STORE_THREAD_NAME)
        while (finished := self._stores.get()) is not None:
            self._store_one(finished)

    def store_ready(self) -> int:
        """Store the recordings finished so far in this thread (`threaded=False`); how many."""
        n = 0
        while not self._stores.empty():
            finished = self._stores.get()
            if finished is None:
                break
            self._store_one(finished)
            n += 1
        return n

    def _store_one(self, finished: Finished) -> None:
        try:
            self._store(finished)
            finished.path.unlink(missing_ok=True)
            self.stored += 1
        except Exception:  # kept in the spool: stored at the next start-up
            self.store_failures += 1
            log.exception("call=%s recording not stored; kept at %s", finished.call_sid,
                          finished.path)  # fmt: skip
        with self._lock:
            self._unfinished -= 1
            self._idle.notify_all()


def spooled_left_behind(spool_dir: Path) -> list[Finished]:
    """Return the spool files no live writer holds: finished ones not stored, and cut ones.

    A cut file (its process died mid-call) is repaired to what it holds and renamed finished.
    Files a live process is writing are locked, and skipped.
    """
    found: list[Finished] = []
    if not spool_dir.is_dir():
        return found
    for path in sorted(spool_dir.iterdir()):
        name = path.name
        if name.endswith(PART):
            stem, complete = name[: -len(PART)], False
        elif name.endswith(DONE):
            stem, complete = name[: -len(DONE)], True
        else:
            continue
        call_sid, _, stream_sid = stem.partition(".")
        try:
            with path.open("r+b") as file:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                frames = repair(path) if not complete else None
        except BlockingIOError:
            continue  # a live writer holds it
        except OSError as exc:
            log.warning("spooled recording %s unreadable: %s", path, exc)
            continue
        if not complete:
            done = path.with_name(stem + DONE)
            os.replace(path, done)
            path = done
        data_bytes = max(0, path.stat().st_size - HEADER_BYTES)
        samples = frames if frames is not None else data_bytes // CHANNELS
        found.append(
            Finished(
                call_sid=call_sid,
                stream_sid=stream_sid,
                path=path,
                frames=samples // FRAME_BYTES,
                dropped=0,
                late=0,
                data_bytes=data_bytes,
                complete=complete,
            )
        )
    return found
