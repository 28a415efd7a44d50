"""The simulated callers' pacing clock: one 20 ms timer per event loop, shared by every call.

Benchmarks drive 100 calls from one core, so a timer per call would cost more than the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator

from telephony.testing.caller.frames import FRAME_S


class Ticker:
    """One 20 ms heartbeat for every call on an event loop.

    A call awaits `wait()` and wakes on the next tick with the loop time. One timer serves all
    calls, so 100 calls cost one wake-up per tick plus one task step each, not 100 timers.
    The tick runs on a deadline and restarts from "now" when it falls a whole period behind,
    so a stall does not turn into a burst of ticks.
    """

    def __init__(self, period_s: float = FRAME_S) -> None:
        self.period_s = period_s
        self._waiters: list[asyncio.Future[float]] = []
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def subscribed(self) -> Iterator[Ticker]:
        """Keep the ticker running while the block runs."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="caller-ticker")
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def wait(self) -> float:
        """Sleep until the next tick; return its loop time."""
        # Each waiter has its own future, so cancelling one call never cancels the others.
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.period_s
            delay = deadline - loop.time()
            if delay < -self.period_s:
                deadline = loop.time()  # a whole period late: resync instead of racing to catch up
            await asyncio.sleep(max(delay, 0.0))
            now = loop.time()
            waiters, self._waiters = self._waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(now)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()


def shared_ticker() -> Ticker:
    """Return the running loop's ticker, shared by every call dialled on it."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = Ticker()
    return ticker
