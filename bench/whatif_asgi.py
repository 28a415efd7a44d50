"""The app with candidate hot-path fixes switched on by environment, for bench/whatif.py only.

Not product code: each fix is applied as a patch at import so its effect can be measured on the
same machine in the same run as the unpatched app, before anyone changes the real modules.

- WHATIF_DISPATCH=1: the stream consumer dispatches without channels' per-message
  `aclose_old_connections()` (a `sync_to_async` thread hop for every WebSocket frame; this
  consumer never touches the database). Now in `TwilioStreamConsumer.dispatch` itself, so
  this flag changes nothing any more: "shipped" and "dispatch" in bench/whatif.py now match.
- WHATIF_RX_TICK=1: the RX thread wakes once per 20 ms tick and takes what is queued, instead
  of sleeping in `rx_q.get()` until each frame arrives (a wake-up and a Condition.notify per
  frame) and then sleeping again until the tick.
- WHATIF_SWITCH_MS=N: `sys.setswitchinterval(N / 1000)`: a thread waiting for the GIL (a TX
  thread whose deadline came) waits at most N ms for the thread holding it (default 5 ms).
- WHATIF_WRITE_TRACE=1: not a fix, a diagnosis: log where each RX write of 1 ms or more spent
  its time (on a CPU, waiting for one, or blocked on the GIL or a lock).
"""

import os
import sys

from project.asgi import application, asgi_app  # noqa: F401  (sets Django up first)

if os.environ.get("WHATIF_DISPATCH") == "1":
    from channels.consumer import get_handler_name

    from telephony.consumers import TwilioStreamConsumer

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    TwilioStreamConsumer.dispatch = dispatch

if os.environ.get("WHATIF_RX_TICK") == "1":
    from telephony.media.framequeue import is_media
    from telephony.media.rx import RxWorker

    def _loop(self):
        rx_q, cadence = self.rx_q, self._cadence
        while self._running:
            if not self.draining:
                cadence.wait()  # one wake-up per tick, frame or not
                if self.tick_stats is not None:
                    self.tick_stats.tick(self._clock())
            if self.pending is None:
                # At stop, take what is left without waiting for ticks.
                item = rx_q.get(timeout=self._get_timeout_s) if self.draining else rx_q.get_nowait()
                if item is None:
                    self._on_tick()
                    cadence.advance()
                    continue
                if not is_media(item):
                    if not self._on_control(item):
                        return
                    continue  # the tick is not used up: take the next item at once
                self.pending = item
            if self._write_one(self.pending):
                self.pending = None
                if not self._drain_burst():
                    return
            self._on_tick()
            cadence.advance()

    RxWorker._loop = _loop

if os.environ.get("WHATIF_SWITCH_MS"):
    sys.setswitchinterval(float(os.environ["WHATIF_SWITCH_MS"]) / 1000)

if os.environ.get("WHATIF_WRITE_TRACE") == "1":
    # Not a fix: a diagnosis. Each RX write of 1 ms or more is logged with where its time went,
    # from the thread's own schedstat: on a CPU, waiting for one (runqueue: the core is busy),
    # or neither (blocked: waiting for the GIL or a lock).
    import logging

    from telephony.media.rx import RxWorker

    trace = logging.getLogger("telephony.whatif")

    def schedstat() -> tuple[int, int]:
        with open("/proc/thread-self/schedstat") as f:
            on_cpu, runqueue, _ = f.read().split()
        return int(on_cpu), int(runqueue)

    def _write_one(self, frame: bytes) -> bool:
        cpu0, rq0 = schedstat()
        t0 = self._clock()
        if not self._write(frame):
            return False
        elapsed_ms = (self._clock() - t0) * 1000.0
        if elapsed_ms >= 1.0:
            cpu1, rq1 = schedstat()
            cpu_ms, rq_ms = (cpu1 - cpu0) / 1e6, (rq1 - rq0) / 1e6
            trace.warning(
                "slow write %s: %.2f ms = cpu %.2f + runqueue %.2f + blocked %.2f",
                self._thread.name,
                elapsed_ms,
                cpu_ms,
                rq_ms,
                elapsed_ms - cpu_ms - rq_ms,
            )
        if elapsed_ms > self.write_ms_max:
            self.write_ms_max = elapsed_ms
        self.frames_written += 1
        return True

    RxWorker._write_one = _write_one
