"""The app as it ships, with every slow RX write traced: served by `capacity.py --trace-writes`.

A diagnosis, not a change: each RX write of TRACE_WRITE_MS or more (default 1 ms, the write_ms
bound of GO/NO-GO; lower it to see more of the tail) is logged with where its time went, from
the RX thread's own schedstat: on a CPU, waiting for one (runqueue: the core was busy), or
neither (blocked: waiting for the GIL or a lock).
`capacity.py` sums these lines per trial. The shipped `RxWorker._write_one` is wrapped, not
copied, so the trace always measures the code as it is.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable

from project.asgi import application, asgi_app  # noqa: F401  (sets Django up first)
from telephony.media.rx import RxWorker

log = logging.getLogger(__name__)

SLOW_WRITE_MS = float(os.environ.get("TRACE_WRITE_MS", "1.0"))


def schedstat() -> tuple[int, int]:
    """Return this thread's nanoseconds on a CPU and waiting in the runqueue, so far."""
    with open("/proc/thread-self/schedstat") as f:
        on_cpu, runqueue, _ = f.read().split()
    return int(on_cpu), int(runqueue)


def traced(write_one: Callable[[RxWorker, bytes], bool]) -> Callable[[RxWorker, bytes], bool]:
    """Wrap `RxWorker._write_one` so that a slow write logs where its time went."""

    @functools.wraps(write_one)
    def write_one_traced(worker: RxWorker, frame: bytes) -> bool:
        cpu0, rq0 = schedstat()
        t0 = worker._clock()
        written = write_one(worker, frame)
        elapsed_ms = (worker._clock() - t0) * 1000.0
        if written and elapsed_ms >= SLOW_WRITE_MS:
            cpu1, rq1 = schedstat()
            cpu_ms, rq_ms = (cpu1 - cpu0) / 1e6, (rq1 - rq0) / 1e6
            log.warning(
                "slow write %s: %.2f ms = cpu %.2f + runqueue %.2f + blocked %.2f",
                threading.current_thread().name,
                elapsed_ms,
                cpu_ms,
                rq_ms,
                elapsed_ms - cpu_ms - rq_ms,
            )
        return written

    return write_one_traced


RxWorker._write_one = traced(RxWorker._write_one)  # type: ignore[method-assign]
