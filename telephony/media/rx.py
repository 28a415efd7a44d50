"""The RX worker: one thread per call writing inbound frames to STT on a 20 ms cadence.

One `pending` frame is held until it is written (FIFO, never requeued); while no STT session is
ready nothing is dropped here (the bounded queue is the only place audio can be lost, and it
counts what it drops). Once STT is ready, a backlog (from the seconds the session took to open)
drains in bounded bursts, so it does not stay behind as permanent hidden delay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from telephony.media.cadence import Cadence
from telephony.media.framequeue import FrameQueue, Item, is_media
from telephony.media.worker import WorkerThread
from telephony.metrics.histogram import Durations

if TYPE_CHECKING:
    from telephony.metrics.stats import IntervalHistogram

log = logging.getLogger(__name__)

BACKLOG_FRAMES = 2  # q above this after a write is a backlog worth draining faster
GET_TIMEOUT_S = 0.5  # at stop: how long to wait for the rest of the audio before ticking


class RxWorker:
    def __init__(
        self,
        *,
        name: str,
        rx_q: FrameQueue,
        write: Callable[[bytes], bool],
        on_control: Callable[[Item], bool],
        on_tick: Callable[[], None],
        cadence: Cadence,
        burst_frames: int = 2,
        clock: Callable[[], float] = time.perf_counter,
        get_timeout_s: float = GET_TIMEOUT_S,
        tick_stats: IntervalHistogram | None = None,
        on_frame: Callable[[bytes, int], None] | None = None,
    ) -> None:
        """`write` returns False while no STT session is ready; `on_control` False ends the loop.

        `on_frame(frame, drops_total)` sees each frame as it is taken from rx_q, STT ready or
        not, with rx_q's drop count at that moment (the recording's hand-off: never blocks).
        """
        self.rx_q = rx_q
        self._write = write
        self._on_control = on_control
        self._on_tick = on_tick
        self._cadence = cadence
        self._burst = burst_frames
        self._clock = clock
        self._get_timeout_s = get_timeout_s
        self.tick_stats = tick_stats  # opt-in (RX_CADENCE_STATS): when each write's tick came
        self._on_frame = on_frame
        self._thread = WorkerThread(name, self.run)
        self._running = True
        self.draining = False  # at stop: write what is queued without waiting for the cadence
        self.frames_written = 0
        self.write_ms_max = 0.0  # slowest write since the meters last took it
        # Every write's time, for the GO/NO-GO rule (p99 of all writes) and /metrics: counted by
        # this thread alone, no lock (telephony.metrics.histogram).
        self.write_times = Durations()
        self.pending: bytes | None = None

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the worker's thread, if one did."""
        return self._thread.error

    def start(self) -> None:
        """Start the worker's thread."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the thread to end; True if it has."""
        return self._thread.join(timeout)

    def abort(self) -> None:
        """Stop without draining (the call is gone and STT will never take the audio)."""
        self._running = False

    def take_write_ms_max(self) -> float:
        value, self.write_ms_max = self.write_ms_max, 0.0
        return value

    def _write_one(self, frame: bytes) -> bool:
        t0 = self._clock()
        if not self._write(frame):
            return False
        elapsed_ms = (self._clock() - t0) * 1000.0
        self.write_times.add(elapsed_ms)
        if elapsed_ms > self.write_ms_max:
            self.write_ms_max = elapsed_ms
        self.frames_written += 1
        return True

    def _drain_burst(self) -> bool:
        """Write up to `burst` more frames this tick while a backlog stands; False on stop."""
        for _ in range(self._burst):
            if self.rx_q.qsize() <= BACKLOG_FRAMES and not self.draining:
                return True
            item = self.rx_q.get_nowait()
            if item is None:
                return True
            if not is_media(item):
                if not self._on_control(item):
                    return False
                continue
            if self._on_frame is not None:
                self._on_frame(item, self.rx_q.drops_at_take)
            if not self._write_one(item):
                self.pending = item  # STT went away mid-burst: keep it, in order
                return True
        return True

    def _take(self) -> Item | None:
        """The next media frame, handling control items on the way; None if there is none.

        On the cadence nothing waits here: the tick already slept. At stop (draining) there is
        no cadence, so wait a little for what is still to come.
        """
        while True:
            if self.draining:
                item = self.rx_q.get(timeout=self._get_timeout_s)
            else:
                item = self.rx_q.get_nowait()
            if item is None:
                return None
            if is_media(item):
                if self._on_frame is not None:
                    self._on_frame(item, self.rx_q.drops_at_take)
                return item
            if not self._on_control(item):
                self._running = False
                return None

    def run(self) -> None:
        """Tick on the cadence until the call stops (the thread's loop; tests call it directly)."""
        # One wake-up per 20 ms tick, frame or not: sleeping in rx_q.get() until each frame
        # arrived cost a second wake-up (and a GIL hand-off) per frame per call.
        cadence, stats = self._cadence, self.tick_stats
        while self._running:
            if not self.draining:
                cadence.wait()
                if stats is not None:
                    stats.tick(self._clock())
            if not self.tick():
                return
            cadence.advance()

    def tick(self) -> bool:
        """Write the pending frame (and a burst of any backlog), then run `on_tick`.

        Returns False once the worker is done (a stop came through the queue).
        """
        if self.pending is None:
            self.pending = self._take()
            if not self._running:
                return False
        if self.pending is not None:
            if self._write_one(self.pending):
                self.pending = None
                if not self._drain_burst():
                    self._running = False
                    return False
            elif self.draining:
                self._cadence.wait()  # no STT session yet even at stop: keep ticking, don't spin
            # else: no STT session yet; drop nothing, try again next tick
        self._on_tick()
        return True
